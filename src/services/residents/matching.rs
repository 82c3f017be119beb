//! Probabilistic matching of residents (概率匹配): a Fellegi–Sunter style score over name
//! (Chinese characters and pinyin, so 张伟 / Zhang Wei and homophone typos such as 张玮 still
//! score), birth date, sex, phone and address. Each field adds its agreement weight or its
//! disagreement weight (roughly log2 of how much likelier the comparison is among records of
//! one person than among records of two); a missing field adds nothing.

use crate::fhir::index::normalize;
use crate::fhir::json::Json;
use crate::fhir::pinyin;

/// The fields of a Patient that matching compares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demographics {
    /// Name with whitespace removed, as written (Han characters, or Latin letters lower case).
    pub name: Option<String>,
    /// Full-pinyin spellings of the name (every reading), or the Latin name lower case.
    pub spellings: Vec<String>,
    pub family: Option<String>,
    pub birth_date: Option<String>,
    pub gender: Option<String>,
    /// Digits only, without a leading +86.
    pub phones: Vec<String>,
    /// Normalised address text.
    pub address: Option<String>,
    /// GB/T 2260 district (county) code, or the district name.
    pub district: Option<String>,
}

/// The weights and thresholds of the match score.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub name_exact: f64,
    pub name_sound: f64,
    pub name_family_only: f64,
    pub name_differ: f64,
    pub birth_exact: f64,
    pub birth_near: f64,
    pub birth_differ: f64,
    pub gender_agree: f64,
    pub gender_differ: f64,
    pub phone_agree: f64,
    pub phone_differ: f64,
    pub address_exact: f64,
    pub district_agree: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            name_exact: 6.0,
            name_sound: 4.0,
            name_family_only: 0.0,
            name_differ: -5.0,
            birth_exact: 5.0,
            birth_near: 0.0,
            birth_differ: -7.0,
            gender_agree: 0.5,
            gender_differ: -8.0,
            phone_agree: 5.0,
            phone_differ: -1.0,
            address_exact: 2.0,
            district_agree: 0.5,
        }
    }
}

/// The highest score two records can reach (every field agreeing exactly).
pub fn max_score(w: &Weights) -> f64 {
    w.name_exact + w.birth_exact + w.gender_agree + w.phone_agree + w.address_exact
}

/// The match grade FHIR `$match` reports for a score against the thresholds.
pub fn grade(score: f64, lower: f64, upper: f64) -> &'static str {
    if score >= upper {
        "certain"
    } else if score >= lower {
        "possible"
    } else {
        "certainly-not"
    }
}

/// What matching reads from a Patient.
pub fn demographics(patient: &Json) -> Demographics {
    let mut d = Demographics::default();
    if let Some(Json::Array(names)) = patient.get("name") {
        let name = names
            .iter()
            .find(|n| n.get_str("use") == Some("official"))
            .or_else(|| names.first());
        if let Some(n) = name {
            let family = n.get_str("family").unwrap_or_default();
            let given: String = match n.get("given") {
                Some(Json::Array(g)) => g.iter().filter_map(Json::as_str).collect(),
                _ => String::new(),
            };
            let text = n
                .get_str("text")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{family}{given}"));
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            if !compact.is_empty() {
                let spellings = pinyin::spellings(&compact)
                    .into_iter()
                    .filter(|s| s.chars().count() > compact.chars().count())
                    .collect::<Vec<_>>();
                d.spellings = if spellings.is_empty() {
                    vec![pinyin::search_form(&text)]
                } else {
                    spellings
                };
                d.name = Some(normalize(&compact));
            }
            if !family.is_empty() {
                d.family = Some(normalize(family));
            }
        }
    }
    d.birth_date = patient.get_str("birthDate").map(str::to_owned);
    d.gender = patient.get_str("gender").map(str::to_owned);
    if let Some(Json::Array(telecom)) = patient.get("telecom") {
        for t in telecom {
            if t.get_str("system") == Some("phone")
                && let Some(v) = t.get_str("value")
            {
                let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                let digits = digits.strip_prefix("86").filter(|_| digits.len() == 13);
                let digits = digits
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.chars().filter(char::is_ascii_digit).collect::<String>());
                if !digits.is_empty() {
                    d.phones.push(digits);
                }
            }
        }
    }
    if let Some(Json::Array(addresses)) = patient.get("address")
        && let Some(a) = addresses
            .iter()
            .find(|a| a.get_str("use") == Some("home"))
            .or_else(|| addresses.first())
    {
        d.address = a.get_str("text").map(|t| {
            normalize(t)
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect()
        });
        let code = match a.get("extension") {
            Some(Json::Array(ext)) => ext
                .iter()
                .find(|e| e.get_str("url").is_some_and(|u| u.ends_with("area-code")))
                .and_then(|e| e.get_str("valueCode")),
            _ => None,
        };
        d.district = code.or_else(|| a.get_str("district")).map(str::to_owned);
    }
    d
}

/// The match score of two residents' demographics.
pub fn score(a: &Demographics, b: &Demographics, w: &Weights) -> f64 {
    let mut s = 0.0;
    if let (Some(x), Some(y)) = (&a.name, &b.name) {
        s += if x == y {
            w.name_exact
        } else if a.spellings.iter().any(|p| b.spellings.contains(p)) {
            w.name_sound
        } else if a.family.is_some() && a.family == b.family {
            w.name_family_only
        } else {
            w.name_differ
        };
    }
    if let (Some(x), Some(y)) = (&a.birth_date, &b.birth_date) {
        s += if x == y {
            w.birth_exact
        } else if near_date(x, y) {
            w.birth_near
        } else {
            w.birth_differ
        };
    }
    if let (Some(x), Some(y)) = (&a.gender, &b.gender)
        && matches!(x.as_str(), "male" | "female")
        && matches!(y.as_str(), "male" | "female")
    {
        s += if x == y {
            w.gender_agree
        } else {
            w.gender_differ
        };
    }
    if !a.phones.is_empty() && !b.phones.is_empty() {
        s += if a.phones.iter().any(|p| b.phones.contains(p)) {
            w.phone_agree
        } else {
            w.phone_differ
        };
    }
    if let (Some(x), Some(y)) = (&a.address, &b.address)
        && x == y
    {
        s += w.address_exact;
    } else if let (Some(x), Some(y)) = (&a.district, &b.district)
        && x == y
    {
        s += w.district_agree;
    }
    s
}

/// Two dates of the same length that differ in one character, or whose month and day are
/// swapped: a keying error rather than another person.
fn near_date(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.bytes().zip(b.bytes()).filter(|(x, y)| x != y).count();
    if diff == 1 {
        return true;
    }
    a.len() == 10 && a[..4] == b[..4] && a[5..7] == b[8..10] && a[8..10] == b[5..7]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(name: &str, birth: &str, gender: &str, phone: &str) -> Demographics {
        demographics(
            &Json::parse(
                format!(
                    r#"{{"resourceType":"Patient","name":[{{"text":"{name}"}}],"birthDate":"{birth}","gender":"{gender}","telecom":[{{"system":"phone","value":"{phone}"}}],"address":[{{"text":"四川省成都市武侯区人民南路1号"}}]}}"#
                )
                .as_bytes(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn scores_order_the_evidence() {
        let w = Weights::default();
        let a = patient("张伟", "1980-03-02", "male", "13800000001");
        let same = score(
            &a,
            &patient("张伟", "1980-03-02", "male", "+86 138-0000-0001"),
            &w,
        );
        let homophone = score(
            &a,
            &patient("张玮", "1980-03-02", "male", "13800000001"),
            &w,
        );
        let latin = score(
            &a,
            &patient("Zhang Wei", "1980-03-02", "male", "13800000001"),
            &w,
        );
        let new_phone = score(
            &a,
            &patient("张伟", "1980-03-02", "male", "13900000002"),
            &w,
        );
        let namesake = score(
            &a,
            &patient("张伟", "1985-07-09", "male", "13900000002"),
            &w,
        );
        let other_sex = score(
            &a,
            &patient("张伟", "1980-03-02", "female", "13800000001"),
            &w,
        );
        assert_eq!(same, max_score(&w));
        assert!(
            same > homophone && homophone > new_phone,
            "{same} {homophone} {new_phone}"
        );
        assert_eq!(homophone, latin);
        let limits = crate::services::residents::mpi::Thresholds::default();
        assert!(
            namesake < limits.lower && other_sex < limits.upper,
            "{namesake} {other_sex}"
        );
        assert!(
            homophone >= limits.upper && new_phone < limits.upper,
            "{homophone} {new_phone}"
        );
        assert!(near_date("1980-03-02", "1980-02-03"));
        assert!(near_date("1980-03-02", "1980-03-03"));
        assert!(!near_date("1980-03-02", "1981-04-02"));
    }
}
