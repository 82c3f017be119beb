//! Pinyin spellings of Chinese names, for the `name-pinyin` search parameter: HIS front desks
//! look residents up by full pinyin (`zhangwei`) or initials (`zw`).

use pinyin::{Pinyin, ToPinyinMulti as _};

/// Spelling variants kept per name (surnames such as 单 shàn/dān and 曾 zēng/céng read
/// several ways; every combination of readings is indexed up to this bound).
const MAX_VARIANTS: usize = 8;

/// Characters of a name spelled at most: every real name fits (the index keeps 1,000 bytes of
/// a key anyway), and the work per name stays linear and small however long the text sent.
pub const MAX_NAME_CHARS: usize = 64;

/// The full pinyin (`zhangwei`) and the initials (`zw`) of every reading of `name`, lower case
/// without tones. Latin letters and digits are kept as they are; other characters are skipped.
/// Empty when `name` holds no Han character. Only the first [`MAX_NAME_CHARS`] characters are
/// spelled.
pub fn spellings(name: &str) -> Vec<String> {
    let mut variants: Vec<(String, String)> = vec![(String::new(), String::new())];
    let mut any_han = false;
    for c in name.chars().take(MAX_NAME_CHARS) {
        let readings: Vec<String> = match c.to_pinyin_multi() {
            Some(multi) => {
                any_han = true;
                let mut r: Vec<String> = multi
                    .into_iter()
                    .map(|p: Pinyin| p.plain().to_owned())
                    .collect();
                r.dedup();
                r
            }
            None if c.is_ascii_alphanumeric() => vec![c.to_ascii_lowercase().to_string()],
            None => continue,
        };
        let mut next = Vec::new();
        for (full, initials) in &variants {
            for (i, r) in readings.iter().enumerate() {
                if i > 0 && next.len() + variants.len() >= MAX_VARIANTS {
                    break;
                }
                let first = r.chars().next().map(String::from).unwrap_or_default();
                next.push((format!("{full}{r}"), format!("{initials}{first}")));
            }
        }
        variants = next;
    }
    if !any_han {
        return Vec::new();
    }
    let mut out: Vec<String> = variants.into_iter().flat_map(|(f, i)| [f, i]).collect();
    out.sort();
    out.dedup();
    out
}

/// The comparison form of a pinyin search value: lower case, no spaces or apostrophes.
pub fn search_form(value: &str) -> String {
    super::text::normalize(value)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\'')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = spellings("张伟");
        assert!(s.contains(&"zhangwei".to_owned()), "{s:?}");
        assert!(s.contains(&"zw".to_owned()), "{s:?}");
        let s = spellings("单田芳");
        assert!(
            s.contains(&"shantianfang".to_owned()) || s.contains(&"dantianfang".to_owned()),
            "{s:?}"
        );
        assert!(s.len() <= 2 * MAX_VARIANTS);
        assert!(spellings("Smith").is_empty());
        assert_eq!(search_form("Zhang Wei"), "zhangwei");
        assert_eq!(search_form("xi'an"), "xian");
    }

    #[test]
    fn a_long_name_is_spelled_in_bounded_time_and_size() {
        let long: String = "张".repeat(2_000_000);
        let s = spellings(&long);
        assert!(!s.is_empty());
        assert!(
            s.iter().all(|v| v.len() <= MAX_NAME_CHARS * 6),
            "{}",
            s[0].len()
        );
    }
}
