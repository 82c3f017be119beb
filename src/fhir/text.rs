//! Text in its comparison form, shared by the index, searches and the name spellings.

use unicode_normalization::UnicodeNormalization as _;

/// Lower case without accents: the comparison form of string search.
pub fn normalize(s: &str) -> String {
    s.nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .flat_map(char::to_lowercase)
        .collect()
}
