//! Identifiers at the edge: Chinese resident ID numbers (居民身份证号, GB 11643), which are
//! also the health card (居民健康卡, WS/T 543) and social security numbers, and unified social
//! credit codes of institutions (统一社会信用代码, GB 32100). A Patient or Organization that
//! carries one of them under a known system is refused with 422 when the value is not valid.

use crate::fhir::json::Json;

/// ID card numbers (居民身份证), national OID.
pub const ID_CARD: &str = "urn:oid:2.16.156.10011.1.3";
/// Resident health card numbers (居民健康卡): equal to the holder's ID number.
pub const HEALTH_CARD: &str = "urn:oid:2.16.156.10011.1.19";
/// The HL7 China connectathon's ID card system: an alias of [`ID_CARD`].
pub const ID_CARD_CN: &str = "urn:oid:2.16.840.1.113883.2.23.1.19.1";
/// The HL7 China connectathon's social security card system: the number is the ID number.
pub const SOCIAL_SECURITY_CN: &str = "urn:oid:2.16.840.1.113883.2.23.1.19.2";
/// Unified social credit codes of institutions.
pub const USCC: &str = "urn:oid:2.16.156.10011.1.5";

/// Systems whose values are 18-character resident ID numbers.
/// The identifier systems whose values are resident ID or health card numbers.
pub const PERSON_NUMBER_SYSTEMS: [&str; 4] = [ID_CARD, HEALTH_CARD, ID_CARD_CN, SOCIAL_SECURITY_CN];

pub fn is_person_number_system(system: &str) -> bool {
    matches!(
        system,
        ID_CARD | HEALTH_CARD | ID_CARD_CN | SOCIAL_SECURITY_CN
    )
}

/// A valid resident ID number, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonNumber {
    /// The number with a lower-case check `x` written upper case.
    pub number: String,
    /// Birth date as `YYYY-MM-DD`.
    pub birth_date: String,
    /// `male` or `female`, from the parity of the sequence digit.
    pub gender: &'static str,
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// Check an 18-character resident ID number: digits, area code shape (province 11–82), a real
/// birth date not in the future, and the ISO 7064 MOD 11-2 check character. `today` is
/// `YYYYMMDD`. The error says what is wrong, without echoing the number.
pub fn person_number(raw: &str, today: &str) -> Result<PersonNumber, &'static str> {
    let number = raw.trim().to_ascii_uppercase();
    let b = number.as_bytes();
    if b.len() != 18 {
        return Err("must be 18 characters long");
    }
    if !b[..17].iter().all(u8::is_ascii_digit) {
        return Err("must have digits as its first 17 characters");
    }
    let province = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
    if !(11..=82).contains(&province) {
        return Err("has an area code that names no province (GB/T 2260)");
    }
    let birth = &number[6..14];
    let (y, m, d) = (
        birth[..4].parse::<i32>().unwrap_or(0),
        birth[4..6].parse::<u8>().unwrap_or(0),
        birth[6..].parse::<u8>().unwrap_or(0),
    );
    let real = time::Month::try_from(m)
        .ok()
        .and_then(|month| time::Date::from_calendar_date(y, month, d).ok())
        .is_some();
    if !real || y < 1880 || birth > today {
        return Err("has a birth date (characters 7 to 14) that is not a real past date");
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    if b[17] != ID_CHECK[(sum % 11) as usize] {
        return Err("has a check character that does not match (ISO 7064 MOD 11-2)");
    }
    let gender = if (b[16] - b'0') % 2 == 1 {
        "male"
    } else {
        "female"
    };
    Ok(PersonNumber {
        birth_date: format!("{}-{}-{}", &birth[..4], &birth[4..6], &birth[6..]),
        number,
        gender,
    })
}

const USCC_CHARS: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Check a unified social credit code (GB 32100): shape and check character.
pub fn credit_code(raw: &str) -> Result<(), &'static str> {
    let code = raw.trim();
    let b = code.as_bytes();
    if b.len() != 18 {
        return Err("must be 18 characters long");
    }
    if !matches!(b[0], b'1' | b'5' | b'9' | b'Y') || !matches!(b[1], b'1' | b'2' | b'3' | b'9') {
        return Err("has an invalid registering authority or kind (characters 1 and 2)");
    }
    if !b[2..8].iter().all(u8::is_ascii_digit) {
        return Err("must have digits as its area code (characters 3 to 8)");
    }
    let mut sum = 0usize;
    let mut weight = 1usize;
    for &c in &b[..17] {
        let Some(v) = USCC_CHARS.find(char::from(c)) else {
            return Err("contains a character outside the code's alphabet");
        };
        sum += v * weight;
        weight = weight * 3 % 31;
    }
    let check = USCC_CHARS.as_bytes()[(31 - sum % 31) % 31];
    if b[17] != check {
        return Err("has a check character that does not match (GB 32100)");
    }
    Ok(())
}

/// The first problem with the identifiers of a Patient or Organization, as a message naming
/// the identifier (`Patient.identifier[1] (urn:oid:…): …`). `today` is `YYYYMMDD`.
pub fn check_resource(t: &str, resource: &Json, today: &str) -> Option<String> {
    let Some(Json::Array(identifiers)) = resource.get("identifier") else {
        return None;
    };
    let gender = resource.get_str("gender");
    for (i, identifier) in identifiers.iter().enumerate() {
        let (Some(system), Some(value)) =
            (identifier.get_str("system"), identifier.get_str("value"))
        else {
            continue;
        };
        let name = format!("{t}.identifier[{i}] ({system})");
        match t {
            "Patient" | "Person" | "RelatedPerson" | "Practitioner"
                if is_person_number_system(system) =>
            {
                match person_number(value, today) {
                    Err(why) => return Some(format!("{name}: not a valid ID number: it {why}")),
                    Ok(n) if t == "Patient" => {
                        if let Some(g @ ("male" | "female")) = gender
                            && g != n.gender
                        {
                            return Some(format!(
                                "{name}: the ID number's sex digit says {}, but Patient.gender is {g}",
                                n.gender
                            ));
                        }
                    }
                    Ok(_) => {}
                }
            }
            "Organization" if system == USCC => {
                if let Err(why) = credit_code(value) {
                    return Some(format!(
                        "{name}: not a valid unified social credit code: it {why}"
                    ));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers() {
        let n = person_number("11010519491231002x", "20261124").unwrap();
        assert_eq!(n.number, "11010519491231002X");
        assert_eq!(n.birth_date, "1949-12-31");
        assert_eq!(n.gender, "female");
        assert!(person_number("11010519491231002X", "20261124").is_ok());
        assert!(person_number("110105194912310021", "20261124").is_err()); // check
        assert!(person_number("11010519491331002X", "20261124").is_err()); // month 13
        assert!(person_number("11010519490229002X", "20261124").is_err()); // not a leap year
        assert!(person_number("99010519491231002X", "20261124").is_err()); // province
        assert!(person_number("1101051949123100", "20261124").is_err()); // length
        assert!(person_number("110105202712310021", "20261124").is_err()); // future
    }

    #[test]
    fn credit_codes() {
        assert!(credit_code("91350100M000100Y43").is_ok());
        assert!(credit_code("91350100M000100Y44").is_err());
        assert!(credit_code("01350100M000100Y43").is_err());
        assert!(credit_code("91350100M00010OY43").is_err()); // letter O is not in the alphabet
    }

    #[test]
    fn resources() {
        let p = Json::parse(
            br#"{"resourceType":"Patient","gender":"male","identifier":[{"system":"urn:x","value":"1"},{"system":"urn:oid:2.16.156.10011.1.3","value":"11010519491231002X"}]}"#,
        )
        .unwrap();
        let why = check_resource("Patient", &p, "20261124").unwrap();
        assert!(
            why.starts_with("Patient.identifier[1] (urn:oid:2.16.156.10011.1.3)"),
            "{why}"
        );
        assert!(why.contains("sex digit"), "{why}");
        let o = Json::parse(
            br#"{"resourceType":"Organization","identifier":[{"system":"urn:oid:2.16.156.10011.1.5","value":"91350100M000100Y44"}]}"#,
        )
        .unwrap();
        assert!(check_resource("Organization", &o, "20261124").is_some());
    }
}
