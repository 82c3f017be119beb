//! The synthetic city (`huimin fixtures generate`): a deterministic region of institutions,
//! practitioners and residents with years of care, written as the transaction bundles each
//! institution would push. Every person is invented; the same seed gives the same bytes.
//!
//! The region is Chengdu's districts and counties (real GB/T 2260 codes). Each district has a
//! district or county hospital and community health centres (urban) or township health centres
//! and village clinics (counties); two city hospitals serve everyone. Residents get valid
//! 18-character ID numbers (area code, birth date, sex digit, MOD 11-2 check), the health card
//! number equal to it, Chinese names, phones and addresses. Care follows the national basic
//! public health service: hypertension and type 2 diabetes at age-dependent prevalence with
//! quarterly follow-ups at the home clinic, childhood immunizations, hospital visits with lab
//! panels. Each institution knows a resident under its own record number (MRN); most also
//! record the ID number, some lose it, a few mistype the name (a homophone), so the resident
//! index has real work to do.
//!
//! The slot pool (号源池): each hospital practitioner and one practitioner of each community or
//! township health centre publishes a Schedule and a week of morning Slots (`slots.json` of
//! the institution, the five weekdays from `--slots-from` on): 30-minute Slots of five places at
//! hospitals, two kept for referrals from primary care until the day before, released to the
//! public seven days before at 08:00; three places at the centres, bookable at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::clock::days_in_month;

/// Identifier systems (national OIDs, see the domain notes).
pub const ID_CARD: &str = "urn:oid:2.16.156.10011.1.3";
pub const HEALTH_CARD: &str = "urn:oid:2.16.156.10011.1.19";
pub const STAFF: &str = "urn:oid:2.16.156.10011.1.4";
pub const USCC: &str = "urn:oid:2.16.156.10011.1.5";
const LOINC: &str = "http://loinc.org";
const ICD10: &str = "urn:oid:2.16.156.10011.2.3.3.11";
const UCUM: &str = "http://unitsofmeasure.org";
const CVX: &str = "http://hl7.org/fhir/sid/cvx";
const ATC: &str = "http://www.whocc.no/atc";
const CATEGORY: &str = "urn:huimin:institution-category";
const ENCOUNTER_TYPE: &str = "urn:huimin:CodeSystem:encounter-type";
const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// A small deterministic generator (SplitMix64): the output depends on the seed only.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// The index of an item drawn with probability proportional to its weight.
    pub fn weighted<T>(&mut self, items: &[T], weight: impl Fn(&T) -> u64) -> usize {
        let mut w = self.below(items.iter().map(&weight).sum());
        items
            .iter()
            .position(|item| {
                let own = weight(item);
                if w < own {
                    true
                } else {
                    w -= own;
                    false
                }
            })
            .unwrap_or(0)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Roughly normal (sum of uniforms) with this mean and spread.
    pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let s: f64 = (0..6)
            .map(|_| (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        mean + (s - 3.0) * sd / 0.707
    }
}

/// A district or county of the region: GB/T 2260 code, name, urban or not, share of residents.
struct District {
    code: &'static str,
    name: &'static str,
    urban: bool,
    weight: u64,
}

const DISTRICTS: &[District] = &[
    District {
        code: "510104",
        name: "锦江区",
        urban: true,
        weight: 9,
    },
    District {
        code: "510105",
        name: "青羊区",
        urban: true,
        weight: 9,
    },
    District {
        code: "510106",
        name: "金牛区",
        urban: true,
        weight: 12,
    },
    District {
        code: "510107",
        name: "武侯区",
        urban: true,
        weight: 12,
    },
    District {
        code: "510108",
        name: "成华区",
        urban: true,
        weight: 10,
    },
    District {
        code: "510112",
        name: "龙泉驿区",
        urban: true,
        weight: 10,
    },
    District {
        code: "510116",
        name: "双流区",
        urban: true,
        weight: 11,
    },
    District {
        code: "510121",
        name: "金堂县",
        urban: false,
        weight: 9,
    },
    District {
        code: "510129",
        name: "大邑县",
        urban: false,
        weight: 9,
    },
    District {
        code: "510131",
        name: "蒲江县",
        urban: false,
        weight: 9,
    },
];

const SURNAMES: &[(&str, u64)] = &[
    ("王", 72),
    ("李", 70),
    ("张", 66),
    ("刘", 53),
    ("陈", 45),
    ("杨", 31),
    ("黄", 23),
    ("赵", 20),
    ("吴", 20),
    ("周", 19),
    ("徐", 15),
    ("孙", 15),
    ("马", 12),
    ("朱", 11),
    ("胡", 11),
    ("郭", 11),
    ("何", 10),
    ("罗", 9),
    ("高", 9),
    ("林", 9),
    ("谢", 6),
    ("唐", 6),
    ("邓", 6),
    ("冯", 5),
    ("曾", 5),
    ("彭", 4),
    ("蒋", 4),
    ("袁", 3),
    ("欧阳", 1),
    ("司马", 1),
];

const GIVEN_MALE: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "斌", "浩", "鹏", "华", "建国", "志强",
    "俊", "宇", "晨", "子轩", "浩然", "建华", "国庆", "文", "刚", "平",
];
const GIVEN_FEMALE: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "燕", "玲", "婷", "雪", "慧", "秀英", "桂英",
    "欣怡", "梓涵", "雨桐", "淑华", "红", "琳", "倩", "佳", "晶", "萍",
];

/// Homophone pairs for the typos institutions make when keying names.
const HOMOPHONES: &[(&str, &str)] = &[
    ("伟", "玮"),
    ("丽", "莉"),
    ("华", "桦"),
    ("明", "铭"),
    ("军", "君"),
    ("静", "婧"),
    ("芳", "方"),
    ("杰", "洁"),
    ("涛", "滔"),
    ("敏", "珉"),
    ("燕", "艳"),
    ("婷", "亭"),
    ("俊", "骏"),
    ("玲", "铃"),
    ("晨", "辰"),
    ("强", "墙"),
    ("平", "萍"),
    ("红", "宏"),
];

const STREETS: &[&str] = &[
    "人民路",
    "建设路",
    "光华大道",
    "天府大道",
    "中山街",
    "解放路",
    "新华路",
    "青年路",
    "和平街",
    "文化路",
    "东风路",
    "幸福街",
];

/// A health institution.
#[derive(Clone)]
pub struct Institution {
    pub id: String,
    pub name: String,
    pub uscc: String,
    /// WS 218 category: A100, B100, C220, D600.
    pub category: &'static str,
    pub district: usize,
    /// The township (乡镇/街道) a primary-care institution serves: district code and three
    /// digits; hospitals serve the district.
    pub township: Option<String>,
    /// How often this institution records the ID number.
    id_rate: f64,
    practitioners: Vec<String>,
}

/// A generated resident.
pub struct Resident {
    pub id_number: String,
    pub family: String,
    pub given: String,
    pub male: bool,
    pub birth: (i32, u32, u32),
    pub phone: String,
    pub district: usize,
    /// The township of the resident's home (their home clinic's).
    pub township: String,
    pub street: String,
    hypertension: bool,
    diabetes: bool,
}

/// The ID number check character (GB 11643, ISO 7064 MOD 11-2) of the first 17 digits.
pub fn id_check(first17: &str) -> char {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

/// A valid unified social credit code (GB 32100) for a public institution in `area`.
pub fn uscc(rng: &mut Rng, area: &str) -> String {
    const CHARSET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    // Organisation code (GB 11714): 8 digits and its check character.
    let org: String = (0..8)
        .map(|_| char::from(b'0' + rng.below(10) as u8))
        .collect();
    const OW: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = org
        .chars()
        .zip(OW)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    let oc = match 11 - s % 11 {
        10 => 'X',
        11 => '0',
        n => char::from(b'0' + n as u8),
    };
    let body = format!("12{area}{org}{oc}");
    let mut sum = 0u32;
    let mut weight = 1u32;
    for c in body.bytes() {
        let v = CHARSET.iter().position(|&x| x == c).unwrap_or(0) as u32;
        sum += v * weight;
        weight = weight * 3 % 31;
    }
    let check = CHARSET[((31 - sum % 31) % 31) as usize] as char;
    format!("{body}{check}")
}

/// The region's institutions and their practitioners.
fn institutions(rng: &mut Rng) -> Vec<Institution> {
    let mut out = Vec::new();
    let mut add =
        |rng: &mut Rng, name: String, category: &'static str, district: usize, id_rate: f64| {
            let n = out.len();
            let practitioners = (0..3 + rng.below(4))
                .map(|k| format!("prac-{n}-{k}"))
                .collect();
            let township = (category != "A100").then(|| {
                let before = out
                    .iter()
                    .filter(|i: &&Institution| i.district == district && i.category != "A100")
                    .count();
                format!("{}{:03}", DISTRICTS[district].code, before + 1)
            });
            out.push(Institution {
                id: format!("org-{n}"),
                uscc: uscc(rng, DISTRICTS[district].code),
                name,
                category,
                district,
                township,
                id_rate,
                practitioners,
            });
        };
    add(rng, "成都市第一人民医院".to_owned(), "A100", 0, 0.85);
    add(rng, "成都市第二人民医院".to_owned(), "A100", 4, 0.85);
    for (i, d) in DISTRICTS.iter().enumerate() {
        let short = d.name.trim_end_matches(['区', '县']);
        add(rng, format!("{}人民医院", d.name), "A100", i, 0.9);
        if d.urban {
            for k in ["东", "西"] {
                add(
                    rng,
                    format!("{short}{k}街道社区卫生服务中心"),
                    "B100",
                    i,
                    0.95,
                );
            }
        } else {
            add(rng, format!("{short}中心镇卫生院"), "C220", i, 0.93);
            for k in ["一", "二"] {
                add(rng, format!("{short}第{k}村卫生室"), "D600", i, 0.8);
            }
        }
    }
    out
}

/// Generate `residents` residents with this seed.
fn residents(rng: &mut Rng, n: usize) -> Vec<Resident> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let district = rng.weighted(DISTRICTS, |d| d.weight);
        // Ages 0–94, fewer of the oldest.
        let age = if rng.chance(0.12) {
            rng.below(15)
        } else if rng.chance(0.8) {
            15 + rng.below(50)
        } else {
            65 + rng.below(30)
        } as i32;
        let year = 2026 - age - 1 + rng.below(2) as i32;
        // The city is as of 2026-11-01: nobody is born after October 2026.
        let month = 1 + rng.below(if year == 2026 { 10 } else { 12 }) as u32;
        let day = 1 + rng.below(u64::from(days_in_month(year, month))) as u32;
        let male = rng.chance(0.51);
        let seq = rng.below(500) * 2 + u64::from(male);
        let first17 = format!(
            "{}{year:04}{month:02}{day:02}{seq:03}",
            DISTRICTS[district].code
        );
        let id_number = format!("{first17}{}", id_check(&first17));
        if !seen.insert(id_number.clone()) {
            continue;
        }
        let family = SURNAMES[rng.weighted(SURNAMES, |s| s.1)].0.to_owned();
        let given = (*rng.pick(if male { GIVEN_MALE } else { GIVEN_FEMALE })).to_owned();
        let prefixes = [
            "138", "139", "135", "136", "150", "151", "158", "186", "187", "199",
        ];
        let phone = format!("{}{:08}", rng.pick(&prefixes), rng.below(100_000_000));
        let street = format!("{}{}号", rng.pick(STREETS), 1 + rng.below(300));
        // Prevalence by age (national surveys, rounded).
        let (htn, dm) = match age {
            0..=17 => (0.0, 0.0),
            18..=44 => (0.10, 0.05),
            45..=59 => (0.30, 0.12),
            _ => (0.55, 0.20),
        };
        out.push(Resident {
            id_number,
            family,
            given,
            male,
            birth: (year, month, day),
            phone,
            district,
            township: String::new(),
            street,
            hypertension: rng.chance(htn),
            diabetes: rng.chance(dm),
        });
    }
    out
}

/// (date, kind) of each encounter one institution records for a resident; kind is
/// "follow-up", "outpatient" or "inpatient".
type Visits = Vec<(String, &'static str)>;

fn date(rng: &mut Rng, from_year: i32) -> String {
    let y = from_year + rng.below((2026 - from_year + 1).max(1) as u64) as i32;
    let m = 1 + rng.below(if y == 2026 { 10 } else { 12 }) as u32;
    let d = 1 + rng.below(28) as u32;
    format!("{y:04}-{m:02}-{d:02}")
}

/// Builds one institution's bundles.
struct Writer<'a> {
    inst: &'a Institution,
    rng: Rng,
    entries: Vec<Value>,
    serial: u64,
}

impl Writer<'_> {
    fn ident(&self, kind: &str) -> String {
        format!("urn:huimin:{}:{kind}", self.inst.id)
    }

    fn next(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// A conditional PUT on the institution's own identifier for this resource.
    fn put(&mut self, mut resource: Value, kind: &str, full_url: Option<String>) -> String {
        let system = self.ident(kind);
        let value = format!("{}{}", kind.to_uppercase(), self.next());
        resource["identifier"] = json!([{"system": system, "value": value}]);
        let t = resource["resourceType"]
            .as_str()
            .unwrap_or("Basic")
            .to_owned();
        let full_url = full_url.unwrap_or_else(|| format!("urn:uuid:{}", uuid_of(&system, &value)));
        self.entries.push(json!({
            "fullUrl": full_url,
            "resource": resource,
            "request": {"method": "PUT", "url": format!("{t}?identifier={system}|{value}")},
        }));
        full_url
    }

    fn patient(&mut self, r: &Resident, mrn: &str) -> String {
        let mut identifiers = vec![json!({
            "use": "usual",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "system": self.ident("mrn"), "value": mrn})];
        let has_id = self.rng.chance(self.inst.id_rate);
        if has_id {
            identifiers.push(json!({"use": "official", "system": ID_CARD, "value": r.id_number}));
            if self.inst.category != "D600" {
                identifiers.push(json!({"system": HEALTH_CARD, "value": r.id_number}));
            }
        }
        let mut given = r.given.clone();
        if self.rng.chance(0.02)
            && let Some((from, to)) = HOMOPHONES.iter().find(|(f, _)| given.contains(f))
        {
            given = given.replacen(from, to, 1);
        }
        let (y, m, d) = r.birth;
        let district = &DISTRICTS[r.district];
        let patient = json!({
            "resourceType": "Patient",
            "identifier": identifiers,
            "name": [{"use": "official", "text": format!("{}{}", r.family, given), "family": r.family, "given": [given]}],
            "telecom": [{"system": "phone", "value": r.phone, "use": "mobile"}],
            "gender": if r.male { "male" } else { "female" },
            "birthDate": format!("{y:04}-{m:02}-{d:02}"),
            "address": [{"use": "home", "text": format!("四川省成都市{}{}", district.name, r.street),
                          "line": [r.street], "city": "成都市", "district": district.name,
                          "state": "四川省", "postalCode": "610000",
                          "extension": [{"url": "urn:huimin:StructureDefinition:area-code", "valueCode": r.township}]}],
            "managingOrganization": {"reference": format!("Organization/{}", self.inst.id)},
        });
        let full_url = format!("urn:uuid:{}", uuid_of(&self.ident("mrn"), mrn));
        self.entries.push(json!({
            "fullUrl": full_url,
            "resource": patient,
            "request": {"method": "POST", "url": "Patient",
                        "ifNoneExist": format!("identifier={}|{mrn}", self.ident("mrn"))},
        }));
        full_url
    }

    fn observation(
        &mut self,
        subject: &str,
        encounter: &str,
        when: &str,
        category: &str,
        code: (&str, &str),
        value: Value,
    ) -> String {
        let mut obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code.0, "display": code.1}]},
            "subject": {"reference": subject},
            "encounter": {"reference": encounter},
            "effectiveDateTime": format!("{when}T09:30:00+08:00"),
            "performer": [{"reference": format!("Organization/{}", self.inst.id)}],
        });
        if let Value::Object(m) = value {
            for (k, v) in m {
                obs[k] = v;
            }
        }
        self.put(obs, "obs", None)
    }

    fn quantity(v: f64, unit: &str) -> Value {
        json!({"valueQuantity": {"value": (v * 10.0).round() / 10.0, "unit": unit, "system": UCUM, "code": unit}})
    }

    fn blood_pressure(&mut self, subject: &str, enc: &str, when: &str, r: &Resident) {
        let (sys, dia) = if r.hypertension {
            (self.rng.normal(146.0, 10.0), self.rng.normal(92.0, 6.0))
        } else {
            (self.rng.normal(118.0, 8.0), self.rng.normal(76.0, 5.0))
        };
        let comp = |code: &str, display: &str, v: f64| {
            json!({"code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                   "valueQuantity": {"value": v.round(), "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}})
        };
        self.observation(
            subject,
            enc,
            when,
            "vital-signs",
            ("85354-9", "Blood pressure panel"),
            json!({"component": [comp("8480-6", "Systolic blood pressure", sys),
                                  comp("8462-4", "Diastolic blood pressure", dia)]}),
        );
    }

    /// One visit: the encounter and what was recorded.
    fn visit(&mut self, r: &Resident, subject: &str, when: &str, kind: &str) {
        let practitioner = self.rng.pick(&self.inst.practitioners).clone();
        let class = match kind {
            "inpatient" => ("IMP", "inpatient encounter"),
            _ => ("AMB", "ambulatory"),
        };
        // The public-health programmes' visits are coded, as the statistics count them.
        let mut types: Vec<&str> = Vec::new();
        match kind {
            "follow-up" => {
                if r.hypertension {
                    types.push("hypertension-follow-up");
                }
                if r.diabetes {
                    types.push("diabetes-follow-up");
                }
            }
            "elderly-check" => types.push("elderly-health-check"),
            "child-check" => types.push("child-health-check"),
            _ => {}
        }
        let mut visit_type = json!({"text": kind});
        if !types.is_empty() {
            visit_type["coding"] = types
                .iter()
                .map(|c| json!({"system": ENCOUNTER_TYPE, "code": c}))
                .collect();
        }
        let programme = !matches!(kind, "outpatient" | "inpatient");
        let enc = self.put(
            json!({
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class.0, "display": class.1},
                "type": [visit_type],
                "subject": {"reference": subject},
                "participant": [{"individual": {"reference": format!("Practitioner/{practitioner}")}}],
                "period": {"start": format!("{when}T09:00:00+08:00"), "end": format!("{when}T10:00:00+08:00")},
                "serviceProvider": {"reference": format!("Organization/{}", self.inst.id)},
            }),
            "enc",
            None,
        );
        self.blood_pressure(subject, &enc, when, r);
        if r.diabetes && (kind == "follow-up" || self.rng.chance(0.5)) {
            let g = self.rng.normal(8.2, 1.6);
            // A follow-up measures fasting glucose; other visits a random one.
            let code = if kind == "follow-up" {
                (
                    "1558-6",
                    "Fasting glucose [Moles/volume] in Serum or Plasma",
                )
            } else {
                ("2345-7", "Glucose [Mass/volume] in Serum or Plasma")
            };
            self.observation(
                subject,
                &enc,
                when,
                "laboratory",
                code,
                Self::quantity(g, "mmol/L"),
            );
        }
        if programme || self.rng.chance(0.6) {
            let w = self.rng.normal(if r.male { 70.0 } else { 58.0 }, 9.0);
            self.observation(
                subject,
                &enc,
                when,
                "vital-signs",
                ("29463-7", "Body weight"),
                Self::quantity(w, "kg"),
            );
        }
        if !programme {
            // A lab panel with its report.
            let mut results = Vec::new();
            for (code, display, mean, sd, unit) in [
                (
                    "6690-2",
                    "Leukocytes [#/volume] in Blood",
                    6.5,
                    1.5,
                    "10*9/L",
                ),
                (
                    "718-7",
                    "Hemoglobin [Mass/volume] in Blood",
                    135.0,
                    12.0,
                    "g/L",
                ),
                (
                    "777-3",
                    "Platelets [#/volume] in Blood",
                    230.0,
                    50.0,
                    "10*9/L",
                ),
            ] {
                let v = self.rng.normal(mean, sd);
                let o = self.observation(
                    subject,
                    &enc,
                    when,
                    "laboratory",
                    (code, display),
                    Self::quantity(v, unit),
                );
                results.push(json!({"reference": o}));
            }
            self.put(
                json!({
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM"}]}],
                    "code": {"coding": [{"system": LOINC, "code": "58410-2", "display": "CBC panel - Blood by Automated count"}]},
                    "subject": {"reference": subject},
                    "encounter": {"reference": enc},
                    "effectiveDateTime": format!("{when}T09:30:00+08:00"),
                    "issued": format!("{when}T11:00:00+08:00"),
                    "performer": [{"reference": format!("Organization/{}", self.inst.id)}],
                    "result": results,
                }),
                "dr",
                None,
            );
        }
    }

    fn condition(&mut self, subject: &str, code: &str, display: &str, onset: &str) {
        self.put(
            json!({
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
                "code": {"coding": [{"system": ICD10, "code": code, "display": display}], "text": display},
                "subject": {"reference": subject},
                "onsetDateTime": onset,
                "recordedDate": onset,
            }),
            "cond",
            None,
        );
    }

    fn medication(&mut self, subject: &str, atc: &str, display: &str, when: &str) {
        let practitioner = self.rng.pick(&self.inst.practitioners).clone();
        self.put(
            json!({
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc, "display": display}], "text": display},
                "subject": {"reference": subject},
                "authoredOn": when,
                "requester": {"reference": format!("Practitioner/{practitioner}")},
                "dosageInstruction": [{"text": "每日一次，每次一片"}],
            }),
            "rx",
            None,
        );
    }

    fn immunization(&mut self, subject: &str, cvx: &str, display: &str, when: &str) {
        self.put(
            json!({
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": {"coding": [{"system": CVX, "code": cvx, "display": display}]},
                "patient": {"reference": subject},
                "occurrenceDateTime": when,
                "performer": [{"actor": {"reference": format!("Organization/{}", self.inst.id)}}],
            }),
            "imm",
            None,
        );
    }
}

/// A name-based UUID (deterministic) for a `urn:uuid:` fullUrl.
fn uuid_of(system: &str, value: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{system}|{value}").as_bytes(),
    )
    .to_string()
}

/// The registry bundle: every institution and practitioner, with fixed ids.
fn registry(insts: &[Institution]) -> Value {
    let mut entries = Vec::new();
    for i in insts {
        let d = &DISTRICTS[i.district];
        let category = match i.category {
            "A100" => "综合医院",
            "B100" => "社区卫生服务中心",
            "C220" => "乡镇卫生院",
            _ => "村卫生室",
        };
        entries.push(json!({
            "resource": {"resourceType": "Organization", "id": i.id, "active": true,
                "identifier": [{"system": USCC, "value": i.uscc}],
                "type": [{"coding": [{"system": CATEGORY, "code": i.category, "display": category}]}],
                "name": i.name,
                "address": [{"city": "成都市", "district": d.name,
                    "extension": [{"url": "urn:huimin:StructureDefinition:area-code",
                                   "valueCode": i.township.as_deref().unwrap_or(d.code)}]}]},
            "request": {"method": "PUT", "url": format!("Organization/{}", i.id)},
        }));
    }
    let mut rng = Rng::new(7);
    for i in insts {
        for p in &i.practitioners {
            let male = rng.chance(0.5);
            let family = rng.pick(SURNAMES).0;
            let given = *rng.pick(if male { GIVEN_MALE } else { GIVEN_FEMALE });
            entries.push(json!({
                "resource": {"resourceType": "Practitioner", "id": p, "active": true,
                    "identifier": [{"system": STAFF, "value": format!("{}-{p}", i.uscc)}],
                    "name": [{"text": format!("{family}{given}"), "family": family, "given": [given]}],
                    "gender": if male { "male" } else { "female" }},
                "request": {"method": "PUT", "url": format!("Practitioner/{p}")},
            }));
            entries.push(json!({
                "resource": {"resourceType": "PractitionerRole", "id": format!("role-{p}"), "active": true,
                    "practitioner": {"reference": format!("Practitioner/{p}")},
                    "organization": {"reference": format!("Organization/{}", i.id)},
                    "code": [{"text": "医师"}]},
                "request": {"method": "PUT", "url": format!("PractitionerRole/role-{p}")},
            }));
        }
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// What was generated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub residents: usize,
    pub institutions: usize,
    pub bundles: usize,
    pub entries: usize,
    pub by_type: BTreeMap<String, usize>,
    /// The slot pool (`slots.json`, not counted above): Schedules and Slots.
    pub schedules: usize,
    pub slots: usize,
}

/// The first day of the published Slots unless told otherwise (a Monday): the files stay the
/// same from run to run; pass a date ahead of today to have Slots one can book.
pub const SLOTS_FROM: &str = "2026-12-07";

/// Departments (诊疗科目) of the Schedules: code system and the codes used (the national list
/// of clinical departments, codes unverified).
pub const DEPARTMENT: &str = "urn:huimin:CodeSystem:department";
const HOSPITAL_DEPARTMENTS: &[(&str, &str)] = &[
    ("03", "内科"),
    ("04", "外科"),
    ("05", "妇产科"),
    ("07", "儿科"),
];
const VISIT_TYPE: &str = "urn:huimin:CodeSystem:visit-type";

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// China Standard Time, the region's clock.
const CST_MS: i64 = 8 * HOUR_MS;

/// An institution's Schedules and Slots as one transaction (PUTs under fixed ids, so pushing
/// it twice changes nothing), or `None` when it publishes none (village clinics).
fn slot_pool(inst: &Institution, days: &[i64]) -> Option<Value> {
    let hospital = inst.category == "A100";
    let publishers: &[String] = match inst.category {
        "A100" => &inst.practitioners,
        "B100" | "C220" => &inst.practitioners[..1.min(inst.practitioners.len())],
        _ => &[],
    };
    if publishers.is_empty() {
        return None;
    }
    let ext = |url: &str, key: &str, v: Value| json!({"url": format!("urn:huimin:StructureDefinition:{url}"), key: v});
    let mut entries = Vec::new();
    for (k, p) in publishers.iter().enumerate() {
        let (code, name) = if hospital {
            HOSPITAL_DEPARTMENTS[k % HOSPITAL_DEPARTMENTS.len()]
        } else {
            ("02", "全科医疗科")
        };
        let specialty =
            json!([{"coding": [{"system": DEPARTMENT, "code": code, "display": name}]}]);
        let (visit, visit_name) = if hospital && k == 0 {
            ("expert", "专家门诊")
        } else {
            ("general", "普通门诊")
        };
        let service =
            json!([{"coding": [{"system": VISIT_TYPE, "code": visit, "display": visit_name}]}]);
        let schedule = format!("schedule-{p}");
        entries.push(json!({
            "resource": {"resourceType": "Schedule", "id": schedule, "active": true,
                "serviceType": service, "specialty": specialty,
                "actor": [{"reference": format!("PractitionerRole/role-{p}")}],
                "planningHorizon": {"start": crate::clock::instant(days[0]), "end": crate::clock::instant(days[days.len() - 1] + DAY_MS)}},
            "request": {"method": "PUT", "url": format!("Schedule/{schedule}")},
        }));
        for (day, &midnight) in days.iter().enumerate() {
            for n in 0..4 {
                let start = midnight + 8 * HOUR_MS + n * HOUR_MS / 2;
                let mut extension = vec![ext(
                    "slot-capacity",
                    "valueInteger",
                    json!(if hospital { 5 } else { 3 }),
                )];
                if hospital {
                    extension.push(ext(
                        "slot-release",
                        "valueDateTime",
                        json!(crate::clock::instant(midnight - 7 * DAY_MS + 8 * HOUR_MS)),
                    ));
                    extension.push(ext("slot-referral-reserve", "valueInteger", json!(2)));
                    extension.push(ext(
                        "slot-reserve-until",
                        "valueDateTime",
                        json!(crate::clock::instant(midnight - DAY_MS + 17 * HOUR_MS)),
                    ));
                }
                let id = format!("slot-{p}-{day}-{n}");
                entries.push(json!({
                    "resource": {"resourceType": "Slot", "id": id, "extension": extension,
                        "serviceType": service, "specialty": specialty,
                        "schedule": {"reference": format!("Schedule/{schedule}")},
                        "status": "free",
                        "start": crate::clock::instant(start),
                        "end": crate::clock::instant(start + HOUR_MS / 2)},
                    "request": {"method": "PUT", "url": format!("Slot/{id}")},
                }));
            }
        }
    }
    Some(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
}

/// The midnights (China Standard Time) of the five weekdays from `day` (`YYYY-MM-DD`) on.
fn weekdays_from(day: &str) -> anyhow::Result<Vec<i64>> {
    let bad = || anyhow::anyhow!("--slots-from '{day}' is not a date (YYYY-MM-DD)");
    let mut parts = day.splitn(3, '-').map(str::parse::<i64>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if day.len() != 10
        || !(1..=12).contains(&m)
        || d < 1
        || d > i64::from(days_in_month(y as i32, m as u32))
    {
        return Err(bad());
    }
    // Days since 1970-01-01 of the civil date (H. Hinnant's days_from_civil).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // The region's midnight is eight hours before UTC's; 1970-01-01 was a Thursday (Monday 0).
    Ok((days..days + 7)
        .filter(|n| (n + 3).rem_euclid(7) < 5)
        .take(5)
        .map(|n| n * DAY_MS - CST_MS)
        .collect())
}

/// Residents per bundle: an institution pushes its records in bundles of this many residents.
const RESIDENTS_PER_BUNDLE: usize = 20;

/// One resident in this many (adults) is a complex chronic patient (hypertension and type-2
/// diabetes) followed for years at five institutions: a record of about 500 resources, the
/// size `$everything` is measured on.
const COMPLEX_EVERY: usize = 2000;

/// The visits of a complex chronic patient, per institution: monthly follow-ups at the home
/// clinic since 2021, outpatient visits at a second local institution, the district hospital
/// and both city hospitals since 2019, and a stay in each hospital.
fn complex_plan(
    seed: u64,
    ri: usize,
    home: usize,
    hospital: usize,
    local: &[usize],
) -> BTreeMap<usize, Visits> {
    let mut rng = Rng::new(seed ^ (ri as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut plan: BTreeMap<usize, Visits> = BTreeMap::new();
    for y in 2021..=2026 {
        for m in 1..=if y == 2026 { 10 } else { 12 } {
            let d = format!("{y:04}-{m:02}-{:02}", 1 + rng.below(28));
            plan.entry(home).or_default().push((d, "follow-up"));
        }
    }
    let second = local.iter().copied().find(|&k| k != home);
    let hospitals = [(hospital, 10), (0, 6), (1, 6)];
    for (inst, n) in second.map(|k| (k, 6)).into_iter().chain(hospitals) {
        for _ in 0..n {
            plan.entry(inst)
                .or_default()
                .push((date(&mut rng, 2019), "outpatient"));
        }
        if n > 6 || inst < 2 {
            plan.entry(inst)
                .or_default()
                .push((date(&mut rng, 2019), "inpatient"));
        }
    }
    plan
}

/// The resident populations the statistics divide by (`huimin stats population`): the city's
/// residents by township, sex and age band at the end of 2026 and of 2025, as if 96 % of the
/// population had a health record here.
fn write_population(people: &[Resident], path: &Path) -> anyhow::Result<()> {
    const BANDS: [(i32, i32); 5] = [(0, 6), (7, 17), (18, 44), (45, 64), (65, 150)];
    let mut out = String::from("area,year,sex,age_from,age_to,population\n");
    for year in [2025, 2026] {
        let mut cells: BTreeMap<(&str, &str, usize), usize> = BTreeMap::new();
        for r in people {
            let age = year - r.birth.0;
            if age < 0 {
                continue;
            }
            let band = BANDS
                .iter()
                .position(|(lo, hi)| age >= *lo && age <= *hi)
                .unwrap_or(BANDS.len() - 1);
            let sex = if r.male { "male" } else { "female" };
            *cells.entry((r.township.as_str(), sex, band)).or_default() += 1;
        }
        for ((area, sex, band), n) in cells {
            let (lo, hi) = BANDS[band];
            let population = (n as f64 / 0.96).ceil() as u64;
            let _ = writeln!(out, "{area},{year},{sex},{lo},{hi},{population}");
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Generate the city into `out` with Slots from [`SLOTS_FROM`] (see [`generate_from`]).
pub fn generate(residents_n: usize, seed: u64, out: &Path) -> anyhow::Result<Summary> {
    generate_from(residents_n, seed, SLOTS_FROM, out)
}

/// Generate the city into `out`: `registry.json`, then `<institution>/bundle-NNNNN.json` and
/// `<institution>/slots.json` (Slots on the five weekdays from `slots_from`), and
/// `manifest.json` with the counts.
pub fn generate_from(
    residents_n: usize,
    seed: u64,
    slots_from: &str,
    out: &Path,
) -> anyhow::Result<Summary> {
    let days = weekdays_from(slots_from)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut rng = Rng::new(seed);
    let insts = institutions(&mut rng);
    let mut people = residents(&mut rng, residents_n);
    let mut summary = Summary {
        residents: people.len(),
        institutions: insts.len(),
        ..Summary::default()
    };
    let reg = registry(&insts);
    count(&reg, &mut summary);
    write_json(&out.join("registry.json"), &reg)?;

    // Which institutions each resident visits: the home clinic of their district (and for
    // counties the village clinic), the district hospital sometimes, a city hospital rarely.
    let mut per_inst: Vec<Vec<(usize, Visits)>> = vec![Vec::new(); insts.len()];
    let mut complex = Vec::new();
    let mut homes = Vec::with_capacity(people.len());
    for (ri, r) in people.iter().enumerate() {
        let age = 2026 - r.birth.0;
        let chronic = r.hypertension || r.diabetes;
        let local: Vec<usize> = insts
            .iter()
            .enumerate()
            .filter(|(_, i)| i.district == r.district && i.category != "A100")
            .map(|(k, _)| k)
            .collect();
        let home = local[ri % local.len().max(1)];
        homes.push(home);
        let hospital = insts
            .iter()
            .position(|i| {
                i.district == r.district && i.category == "A100" && !i.name.starts_with("成都市")
            })
            .unwrap_or(0);
        let mut plan: BTreeMap<usize, Visits> = BTreeMap::new();
        // Follow-ups: four a year for chronic patients since 2023.
        if chronic {
            for y in 2023..=2026 {
                for q in 0..4u32 {
                    if y == 2026 && q == 3 {
                        continue;
                    }
                    let d = format!(
                        "{y:04}-{:02}-{:02}",
                        1 + q * 3 + rng.below(2) as u32,
                        1 + rng.below(28)
                    );
                    plan.entry(home).or_default().push((d, "follow-up"));
                }
            }
        } else if rng.chance(0.6) {
            plan.entry(home)
                .or_default()
                .push((date(&mut rng, 2021), "outpatient"));
        }
        let hospital_visits = rng.below(if age > 60 { 4 } else { 2 }) + u64::from(chronic);
        for _ in 0..hospital_visits {
            plan.entry(hospital)
                .or_default()
                .push((date(&mut rng, 2019), "outpatient"));
        }
        if rng.chance(if age > 60 { 0.25 } else { 0.08 }) {
            let city = rng.below(2) as usize;
            let kind = if rng.chance(0.3) {
                "inpatient"
            } else {
                "outpatient"
            };
            plan.entry(city)
                .or_default()
                .push((date(&mut rng, 2019), kind));
        }
        // A complex chronic patient: the plan drawn above is replaced (the main generator's
        // draws stay the same, so the rest of the city does not change).
        if (ri + 1) % COMPLEX_EVERY == 0 && age >= 18 {
            plan = complex_plan(seed, ri, home, hospital, &local);
            complex.push(ri);
        }
        // Health checks of the elderly (65+) and of children (0-6) at the home clinic, drawn
        // apart so that the rest of the city stays as it was.
        let mut checks = Rng::new(seed ^ (ri as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
        for y in 2024..=2026 {
            let age_then = y - r.birth.0;
            let kind = match age_then {
                65.. if checks.chance(0.7) => "elderly-check",
                1..=6 if checks.chance(0.85) => "child-check",
                _ => continue,
            };
            let m = 1 + checks.below(if y == 2026 { 10 } else { 12 }) as u32;
            let d = 1 + checks.below(28) as u32;
            plan.entry(home)
                .or_default()
                .push((format!("{y:04}-{m:02}-{d:02}"), kind));
        }
        for (inst, mut visits) in plan {
            visits.sort();
            per_inst[inst].push((ri, visits));
        }
    }
    for (ri, home) in homes.into_iter().enumerate() {
        people[ri].township = insts[home]
            .township
            .clone()
            .unwrap_or_else(|| DISTRICTS[people[ri].district].code.to_owned());
    }
    write_population(&people, &out.join("population.csv"))?;
    for ri in complex {
        people[ri].hypertension = true;
        people[ri].diabetes = true;
    }

    // Ground truth for measuring the resident index: which institution record is which resident.
    let mut truth = String::from("mrn_system\tmrn\tresident\n");
    for (k, inst) in insts.iter().enumerate() {
        let dir = out.join(&inst.id);
        std::fs::create_dir_all(&dir)?;
        if let Some(pool) = slot_pool(inst, &days) {
            for e in pool["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                match e["resource"]["resourceType"].as_str() {
                    Some("Schedule") => summary.schedules += 1,
                    _ => summary.slots += 1,
                }
            }
            write_json(&dir.join("slots.json"), &pool)?;
        }
        let mut writer = Writer {
            inst,
            rng: Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(k as u64)),
            entries: Vec::new(),
            serial: 0,
        };
        for (chunk_no, chunk) in per_inst[k].chunks(RESIDENTS_PER_BUNDLE).enumerate() {
            for (ri, visits) in chunk {
                let r = &people[*ri];
                let mrn = format!("{:08}", 10_000_000 + ri * 7 + k);
                let subject = writer.patient(r, &mrn);
                let _ = writeln!(truth, "{}\t{mrn}\t{ri}", writer.ident("mrn"));
                let first = visits.first().map(|(d, _)| d.clone()).unwrap_or_default();
                if inst.category != "A100" || writer.rng.chance(0.5) {
                    if r.hypertension {
                        writer.condition(&subject, "I10.x00x002", "原发性高血压", &first);
                        writer.medication(&subject, "C08CA01", "氨氯地平片", &first);
                    }
                    if r.diabetes {
                        writer.condition(&subject, "E11.900", "2型糖尿病", &first);
                        writer.medication(&subject, "A10BA02", "二甲双胍片", &first);
                    }
                }
                for (when, kind) in visits {
                    writer.visit(r, &subject, when, kind);
                }
                // Childhood immunizations at the home clinic.
                let age = 2026 - r.birth.0;
                if age < 7 && inst.category != "A100" {
                    let (y, m, d) = r.birth;
                    for (cvx, name, months) in [
                        ("08", "乙肝疫苗", 0),
                        ("19", "卡介苗", 0),
                        ("10", "脊灰灭活疫苗", 2),
                        ("20", "百白破疫苗", 3),
                        ("03", "麻腮风疫苗", 8),
                    ] {
                        let total = m - 1 + months;
                        let when = format!(
                            "{:04}-{:02}-{:02}",
                            y + (total / 12) as i32,
                            total % 12 + 1,
                            d.min(28)
                        );
                        if when.as_str() < "2026-11-01" {
                            writer.immunization(&subject, cvx, name, &when);
                        }
                    }
                }
            }
            let bundle = json!({"resourceType": "Bundle", "type": "transaction",
                                "entry": std::mem::take(&mut writer.entries)});
            count(&bundle, &mut summary);
            summary.bundles += 1;
            write_json(
                &dir.join(format!("bundle-{:05}.json", chunk_no + 1)),
                &bundle,
            )?;
        }
    }
    let mut manifest = String::new();
    let _ = write!(
        manifest,
        "{}",
        json!({"seed": seed, "residents": summary.residents, "institutions": summary.institutions,
               "bundles": summary.bundles, "entries": summary.entries, "resources": summary.by_type,
               "slot_pool": {"from": slots_from, "Schedule": summary.schedules, "Slot": summary.slots}})
    );
    std::fs::write(out.join("manifest.json"), manifest)?;
    std::fs::write(out.join("truth.tsv"), truth)?;
    Ok(summary)
}

fn count(bundle: &Value, summary: &mut Summary) {
    for e in bundle["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        summary.entries += 1;
        let t = e["resource"]["resourceType"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        *summary.by_type.entry(t).or_default() += 1;
    }
}

fn write_json(path: &Path, v: &Value) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(v)?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn id_numbers_and_credit_codes_check() {
        assert_eq!(id_check("11010519491231002"), 'X');
        let mut rng = Rng::new(1);
        for r in residents(&mut rng, 500) {
            let (first, last) = r.id_number.split_at(17);
            assert_eq!(last.chars().next(), Some(id_check(first)));
            // Sex digit: odd for men.
            let sex = first.as_bytes()[16] - b'0';
            assert_eq!(sex % 2 == 1, r.male, "{}", r.id_number);
            let (y, m, d) = r.birth;
            assert_eq!(&first[6..14], format!("{y:04}{m:02}{d:02}"));
            assert!(d <= days_in_month(y, m));
        }
        let code = uscc(&mut rng, "510104");
        assert_eq!(code.len(), 18);
        assert!(code.starts_with("12510104"));
        // Known valid code from the standard's example.
        const CHARSET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
        let check = |c: &str| {
            let mut sum = 0u32;
            let mut w = 1u32;
            for b in c[..17].bytes() {
                sum += CHARSET.iter().position(|&x| x == b).unwrap() as u32 * w;
                w = w * 3 % 31;
            }
            CHARSET[((31 - sum % 31) % 31) as usize] == c.as_bytes()[17]
        };
        assert!(check("91350100M000100Y43"));
        assert!(check(&code));
    }

    #[test]
    fn the_same_seed_gives_the_same_city() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = generate(30, 42, a.path()).unwrap();
        let sb = generate(30, 42, b.path()).unwrap();
        assert_eq!(sa, sb);
        let read = |p: &Path| std::fs::read(p.join("org-2/bundle-00001.json")).unwrap();
        assert_eq!(read(a.path()), read(b.path()));
        let c = tempfile::tempdir().unwrap();
        generate(30, 43, c.path()).unwrap();
        assert_ne!(read(a.path()), read(c.path()));
        assert!(sa.by_type["Observation"] > sa.by_type["Encounter"]);
        assert!(sa.by_type.contains_key("Condition"));
    }

    #[test]
    fn complex_chronic_patients_have_records_of_about_500_resources_at_five_institutions() {
        let dir = tempfile::tempdir().unwrap();
        generate(COMPLEX_EVERY, 1, dir.path()).unwrap();
        // Resources per resident (through their Patients' fullUrls) and institutions per resident.
        let truth = std::fs::read_to_string(dir.path().join("truth.tsv")).unwrap();
        let resident_of_mrn: HashMap<(String, String), String> = truth
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                ((f[0].to_owned(), f[1].to_owned()), f[2].to_owned())
            })
            .collect();
        let mut resources: HashMap<String, usize> = HashMap::new();
        let mut places: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
        for inst in std::fs::read_dir(dir.path()).unwrap() {
            let inst = inst.unwrap().path();
            if !inst.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&inst).unwrap() {
                let bundle: Value =
                    serde_json::from_slice(&std::fs::read(file.unwrap().path()).unwrap()).unwrap();
                let entries = bundle["entry"].as_array().unwrap();
                let mut patients: HashMap<&str, String> = HashMap::new();
                for e in entries {
                    if e["resource"]["resourceType"] == "Patient" {
                        let mrn = &e["resource"]["identifier"][0];
                        let key = (
                            mrn["system"].as_str().unwrap().to_owned(),
                            mrn["value"].as_str().unwrap().to_owned(),
                        );
                        patients.insert(
                            e["fullUrl"].as_str().unwrap(),
                            resident_of_mrn[&key].clone(),
                        );
                    }
                }
                for e in entries {
                    let r = &e["resource"];
                    let about = r["subject"]["reference"]
                        .as_str()
                        .or(r["patient"]["reference"].as_str())
                        .or(e["fullUrl"].as_str());
                    if let Some(resident) = about.and_then(|u| patients.get(u)) {
                        *resources.entry(resident.clone()).or_default() += 1;
                        places
                            .entry(resident.clone())
                            .or_default()
                            .insert(inst.display().to_string());
                    }
                }
            }
        }
        let (who, most) = resources.iter().max_by_key(|(_, n)| **n).unwrap();
        assert!((450..=650).contains(most), "{most}");
        assert_eq!(places[who].len(), 5);
        // Everyone else keeps an ordinary record.
        assert!(resources.values().filter(|n| **n > 200).count() == 1);
    }
}
