//! Public-health statistics through the HTTP API: the population loader, indicators against a
//! hand-counted small city, every stratifier, small-cell suppression with its complementary
//! cells, the official role's limits, series and CSV.

use serde_json::{Value, json};

use crate::helpers::{TestApp, id_number, spawn_app_with};
use huimin::auth::{Role, TokenRequest, dev_token};

const AREA_CODE: &str = "urn:huimin:StructureDefinition:area-code";
const ENC_TYPE: &str = "urn:huimin:CodeSystem:encounter-type";
const LOINC: &str = "http://loinc.org";

/// One synthetic resident of the small city.
struct Person {
    area: &'static str,
    male: bool,
    birth: &'static str,
    card: bool,
    hypertension: Option<&'static str>,
    follow_ups: Vec<&'static str>,
    /// (date, systolic, diastolic)
    pressures: Vec<(&'static str, u32, u32)>,
}

fn person(area: &'static str, male: bool, birth: &'static str) -> Person {
    Person {
        area,
        male,
        birth,
        card: false,
        hypertension: None,
        follow_ups: Vec::new(),
        pressures: Vec::new(),
    }
}

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.stats_rounding = 1;
        s.stats_min_cell = 10;
    })
    .await
}

/// Counts unrounded, the smallest minimum cell.
async fn exact_app() -> TestApp {
    spawn_app_with(|s| {
        s.stats_rounding = 1;
        s.stats_min_cell = 5;
    })
    .await
}

fn official(app: &TestApp, area: &str) -> String {
    dev_token(
        &app.settings,
        &TokenRequest {
            sub: format!("official-{area}"),
            role: Role::Official,
            scope: "user/*.rs".to_owned(),
            org: None,
            fhir_user: None,
            area: Some(area.to_owned()),
            ttl_secs: 600,
        },
    )
    .unwrap()
}

fn admin(app: &TestApp) -> String {
    app.token_for(Role::Admin, "system/*.cruds")
}

/// The registry: two community centres of district 510104 (townships 001 and 002), a
/// township centre of county 510121, a hospital.
async fn registry(app: &TestApp) {
    let tok = admin(app);
    for (id, category, area) in [
        ("a", "B100", "510104001"),
        ("b", "B100", "510104002"),
        ("c", "C220", "510121001"),
        ("h", "A100", "510104"),
    ] {
        let org = json!({"resourceType": "Organization", "id": id, "name": format!("机构{id}"),
            "type": [{"coding": [{"system": "urn:huimin:institution-category", "code": category}]}],
            "address": [{"extension": [{"url": AREA_CODE, "valueCode": area}]}]});
        let r = crate::workflow::call(app, &tok, "PUT", &format!("/fhir/Organization/{id}"), &org)
            .await;
        assert!(r.status.is_success(), "{}", r.text());
    }
}

/// Push `people` as institution `org`'s records in one transaction.
async fn push(app: &TestApp, org: &str, people: &[Person], first_seq: u32) {
    let mut entries = Vec::new();
    for (i, p) in people.iter().enumerate() {
        let seq = first_seq + i as u32;
        let digits = p.birth.replace('-', "");
        let id = id_number(&p.area[..6], &digits, seq * 2 + u32::from(p.male));
        let full = format!("urn:uuid:00000000-0000-4000-8000-{:012}", seq);
        let mut identifiers = vec![
            json!({"system": format!("urn:huimin:{org}:mrn"), "value": format!("M{seq}")}),
            json!({"system": "urn:oid:2.16.156.10011.1.3", "value": id}),
        ];
        if p.card {
            identifiers.push(json!({"system": "urn:oid:2.16.156.10011.1.19", "value": id}));
        }
        entries.push(json!({"fullUrl": full, "request": {"method": "POST", "url": "Patient"},
            "resource": {"resourceType": "Patient", "identifier": identifiers,
                "name": [{"text": format!("居民{seq}")}],
                "gender": if p.male { "male" } else { "female" }, "birthDate": p.birth,
                "address": [{"use": "home", "extension": [{"url": AREA_CODE, "valueCode": p.area}]}],
                "managingOrganization": {"reference": format!("Organization/{org}")}}}));
        if let Some(status) = p.hypertension {
            entries.push(json!({"request": {"method": "POST", "url": "Condition"},
                "resource": {"resourceType": "Condition",
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
                    "code": {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.11", "code": "I10.x00x002"}]},
                    "subject": {"reference": full}, "onsetDateTime": "2020-01-01"}}));
        }
        for d in &p.follow_ups {
            entries.push(json!({"request": {"method": "POST", "url": "Encounter"},
                "resource": {"resourceType": "Encounter", "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "type": [{"coding": [{"system": ENC_TYPE, "code": "hypertension-follow-up"}]}],
                    "subject": {"reference": full},
                    "period": {"start": format!("{d}T09:00:00+08:00"), "end": format!("{d}T09:20:00+08:00")},
                    "serviceProvider": {"reference": format!("Organization/{org}")}}}));
        }
        for (d, sys, dia) in &p.pressures {
            let comp = |code: &str, v: u32| {
                json!({"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": v, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
            };
            entries.push(json!({"request": {"method": "POST", "url": "Observation"},
                "resource": {"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
                    "subject": {"reference": full}, "effectiveDateTime": format!("{d}T09:10:00+08:00"),
                    "component": [comp("8480-6", *sys), comp("8462-4", *dia)]}}));
        }
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let r = crate::workflow::call(app, &app.his_of(org), "POST", "/fhir", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Load `csv` as the populations, which must succeed.
fn populate(app: &TestApp, csv: &str) {
    let out = load_population(app, csv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load_population(app: &TestApp, csv: &str) -> std::process::Output {
    let path = app.settings.data_dir.join("population.csv");
    std::fs::write(&path, csv).unwrap();
    app.cli(&["stats", "population", path.to_str().unwrap()])
}

async fn evaluate(app: &TestApp, token: &str, query: &str) -> crate::helpers::Reply {
    app.get_as(token, &format!("/fhir/Measure/{query}")).await
}

/// The report (or Bundle of reports) `query` answers, which must be a 200.
async fn evaluated(app: &TestApp, token: &str, query: &str) -> Value {
    let r = evaluate(app, token, query).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.json()
}

const YEAR: &str = "periodStart=2026-01-01&periodEnd=2026-12-31";

/// `(count or "masked", score)` of a population of a group or stratum.
fn count(part: &Value, code: &str) -> Option<String> {
    let p = part["population"]
        .as_array()?
        .iter()
        .find(|p| p["code"]["coding"][0]["code"] == code)?;
    match &p["count"] {
        Value::Number(n) => Some(n.to_string()),
        _ if p["_count"]["extension"][0]["valueCode"] == "masked" => Some("masked".to_owned()),
        _ => None,
    }
}

/// A stratifier's strata as (value, numerator, score present).
fn strata(report: &Value, stratifier: &str, code: &str) -> Vec<(String, String, bool)> {
    let s = report["group"][0]["stratifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"][0]["text"] == stratifier)
        .unwrap_or_else(|| panic!("no stratifier {stratifier}: {report}"));
    s["stratum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            (
                st["value"]["text"].as_str().unwrap().to_owned(),
                count(st, code).unwrap_or_default(),
                st.get("measureScore").is_some(),
            )
        })
        .collect()
}

fn s(v: &str, n: &str, scored: bool) -> (String, String, bool) {
    (v.to_owned(), n.to_owned(), scored)
}

/// The coverage city: township 510104001 has 12 men aged 36 with health cards and 8 women
/// over 65 (centre a), township 510104002 15 girls aged 4 (centre b), township 510121001
/// three men aged 36 (centre c). Populations: 20, 10; 20; 10.
async fn coverage_city(app: &TestApp) {
    registry(app).await;
    let mut a: Vec<Person> = (0..12)
        .map(|_| Person {
            card: true,
            ..person("510104001", true, "1990-01-01")
        })
        .collect();
    a.extend((0..8).map(|_| person("510104001", false, "1950-01-01")));
    push(app, "a", &a, 100).await;
    let b: Vec<Person> = (0..15)
        .map(|_| person("510104002", false, "2022-06-01"))
        .collect();
    push(app, "b", &b, 200).await;
    let c: Vec<Person> = (0..3)
        .map(|_| person("510121001", true, "1990-01-01"))
        .collect();
    push(app, "c", &c, 300).await;
    populate(
        app,
        "area,year,sex,age_from,age_to,population\n\
         510104001,2026,male,18,44,20\n\
         510104001,2026,female,65,150,10\n\
         510104002,2026,female,0,6,20\n\
         510121001,2026,male,18,44,10\n",
    );
}

#[actix_web::test]
async fn coverage_by_every_stratifier_with_small_cells_and_their_complements_masked() {
    let app = app().await;
    coverage_city(&app).await;
    let tok = admin(&app);
    let report = evaluated(
        &app,
        &tok,
        &format!("ehr-coverage/$evaluate-measure?{YEAR}"),
    )
    .await;
    assert_eq!(report["resourceType"], "MeasureReport");
    assert_eq!(report["status"], "complete");
    assert_eq!(report["type"], "summary");
    assert_eq!(report["measure"], "urn:huimin:Measure:ehr-coverage");
    let group = &report["group"][0];
    assert_eq!(count(group, "numerator").as_deref(), Some("38"));
    assert_eq!(count(group, "denominator").as_deref(), Some("60"));
    assert_eq!(group["measureScore"]["value"].as_f64(), Some(0.6333));
    // District 510121 has 3: masked, and 510104 with it (else 38 - 35 shows the 3); the
    // townships of 510104 would add up to it again, so they are masked too.
    assert_eq!(
        strata(&report, "district", "numerator"),
        [s("510104", "masked", false), s("510121", "masked", false)]
    );
    assert_eq!(
        strata(&report, "township", "numerator"),
        [
            s("510104001", "masked", false),
            s("510104002", "masked", false),
            s("510121001", "masked", false)
        ]
    );
    // Populations are public: the denominators stay.
    let d = report["group"][0]["stratifier"][0]["stratum"][0].clone();
    assert_eq!(count(&d, "denominator").as_deref(), Some("50"));
    assert_eq!(
        strata(&report, "sex", "numerator"),
        [s("female", "23", true), s("male", "15", true)]
    );
    // 8 women over 65 are masked, and the next smallest band with them.
    assert_eq!(
        strata(&report, "age-band", "numerator"),
        [
            s("0-6", "masked", false),
            s("18-44", "15", true),
            s("65+", "masked", false)
        ]
    );
    // Centre c's 3 are masked; its category C220 is then 3 as well and masked, B100 with
    // it, and a and b, which add up to B100.
    assert_eq!(
        strata(&report, "organization-type", "numerator"),
        [s("B100", "masked", false), s("C220", "masked", false)]
    );
    assert_eq!(
        strata(&report, "organization", "numerator"),
        [
            s("Organization/a", "masked", false),
            s("Organization/b", "masked", false),
            s("Organization/c", "masked", false)
        ]
    );

    // The district's official sees its own district only, where nothing is small.
    let district = official(&app, "510104");
    let report = evaluated(
        &app,
        &district,
        &format!("ehr-coverage/$evaluate-measure?{YEAR}"),
    )
    .await;
    assert_eq!(
        count(&report["group"][0], "numerator").as_deref(),
        Some("35")
    );
    assert_eq!(
        count(&report["group"][0], "denominator").as_deref(),
        Some("50")
    );
    assert_eq!(
        strata(&report, "district", "numerator"),
        [s("510104", "35", true)]
    );
    assert_eq!(
        strata(&report, "township", "numerator"),
        [s("510104001", "20", true), s("510104002", "15", true)]
    );
    // Health cards: the 12 men of centre a.
    let report = evaluated(
        &app,
        &district,
        &format!("$evaluate-measure?measure=urn:huimin:Measure:health-card-issuance&{YEAR}&stratifier=sex"),
    )
    .await;
    assert_eq!(
        count(&report["group"][0], "numerator").as_deref(),
        Some("12")
    );
    assert_eq!(
        strata(&report, "sex", "numerator"),
        [s("female", "0", true), s("male", "12", true)]
    );
    assert_eq!(
        report["group"][0]["stratifier"].as_array().unwrap().len(),
        1
    );
    app.assert_stat_cells_exact();
}

#[actix_web::test]
async fn an_official_reads_statistics_of_its_area_and_nothing_personal() {
    let app = app().await;
    coverage_city(&app).await;
    let district = official(&app, "510104");
    let path = format!("ehr-coverage/$evaluate-measure?{YEAR}");
    // Another district, a subject, individual reports: refused.
    evaluate(&app, &district, &format!("{path}&area=510121"))
        .await
        .outcome(403);
    let r = evaluated(&app, &district, &format!("{path}&area=510104001")).await;
    assert_eq!(
        strata(&r, "township", "numerator"),
        [s("510104001", "20", true)]
    );
    for q in [
        "reportType=subject-list",
        "reportType=individual",
        "subject=Patient/x",
    ] {
        evaluate(&app, &district, &format!("{path}&{q}"))
            .await
            .outcome(403);
    }
    // Any personal resource, by read or search: 403.
    for p in [
        "/fhir/Patient",
        "/fhir/Encounter?subject=Patient/x",
        "/fhir/Observation",
    ] {
        app.get_as(&district, p).await.outcome(403);
    }
    // Institutions and residents do not read statistics.
    let his = app.his_of("a");
    evaluate(&app, &his, &path).await.outcome(403);
    // An official token without an area is refused.
    let no_area = dev_token(
        &app.settings,
        &TokenRequest {
            sub: "official-x".to_owned(),
            role: Role::Official,
            scope: "user/*.rs".to_owned(),
            org: None,
            fhir_user: None,
            area: None,
            ttl_secs: 600,
        },
    )
    .unwrap();
    evaluate(&app, &no_area, &path).await.outcome(401);
    // The CLI refuses to print one.
    let out = app.cli(&["token", "--role", "official"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--area"));
    let out = app.cli(&["token", "--role", "official", "--area", "510104"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Bad parameters name themselves.
    for (q, named) in [
        ("periodStart=2026-01-02&periodEnd=2026-12-31", "periodStart"),
        ("periodStart=2026-01-01&periodEnd=2026-12-30", "periodEnd"),
        ("periodStart=2026-01-01", "periodEnd"),
        (
            "periodStart=2026-01-01&periodEnd=2026-12-31&stratifier=income",
            "stratifier",
        ),
        (
            "periodStart=2026-01-01&periodEnd=2026-12-31&area=51x",
            "area",
        ),
    ] {
        let o = evaluate(
            &app,
            &district,
            &format!("ehr-coverage/$evaluate-measure?{q}"),
        )
        .await
        .outcome(400);
        assert!(o.to_string().contains(named), "{q}: {o}");
    }
    evaluate(
        &app,
        &district,
        &format!("no-such/$evaluate-measure?{YEAR}"),
    )
    .await
    .outcome(404);
    // The shipped definitions read like stored Measures.
    let m = app
        .get_as(&district, "/fhir/Measure/hypertension-control")
        .await;
    assert_eq!(m.status, 200, "{}", m.text());
    let m = m.json();
    assert_eq!(m["url"], "urn:huimin:Measure:hypertension-control");
    let pops = m["group"][0]["population"].as_array().unwrap();
    assert!(
        pops.iter()
            .all(|p| p["description"].as_str().is_some_and(|d| !d.is_empty()))
    );
}

#[actix_web::test]
async fn the_population_loader_checks_every_line_and_replaces_an_areas_year() {
    let app = app().await;
    coverage_city(&app).await;
    for (csv, named) in [
        ("area,year,sex\n510104,2026,male\n", "header"),
        (
            "area,year,sex,age_from,age_to,population\n510104,2026,other,0,6,5\n",
            "line 2: sex",
        ),
        (
            "area,year,sex,age_from,age_to,population\n510104,2026,male,0,6,5\n5101x4,2026,male,0,6,5\n",
            "line 3: area",
        ),
        (
            "area,year,sex,age_from,age_to,population\n510104,2026,male,9,6,5\n",
            "line 2: ages",
        ),
    ] {
        let out = load_population(&app, csv);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{named}: {err}");
    }
    // Township 510121001's year again, now 30: the running server uses it at once.
    populate(
        &app,
        "\u{feff}area,year,sex,age_from,age_to,population\n510121001,2026,male,18,44,30\n",
    );
    let r = evaluated(
        &app,
        &admin(&app),
        &format!("ehr-coverage/$evaluate-measure?{YEAR}&stratifier=district"),
    )
    .await;
    assert_eq!(count(&r["group"][0], "denominator").as_deref(), Some("80"));
}

/// Hypertension in centre a's township: twelve patients, seven followed up four times in
/// 2026 (one each quarter), five once; six with their latest pressure on target. Not
/// counted: a resolved diagnosis with follow-ups, follow-ups of a resident without the
/// diagnosis, a patient followed up only in 2025.
async fn hypertension_city(app: &TestApp) {
    registry(app).await;
    let quarterly = vec!["2026-02-10", "2026-05-10", "2026-08-10", "2026-11-10"];
    let mut people = Vec::new();
    for i in 0..12 {
        let mut p = person("510104001", i % 2 == 0, "1960-03-01");
        p.hypertension = Some("active");
        p.follow_ups = if i < 7 {
            quarterly.clone()
        } else {
            vec!["2026-06-01"]
        };
        // An early reading off target, the latest on target for the first six.
        p.pressures = vec![
            ("2026-01-15", 150, 95),
            if i < 6 {
                ("2026-11-10", 128, 82)
            } else {
                ("2026-11-10", 152, 96)
            },
        ];
        people.push(p);
    }
    let mut resolved = person("510104001", true, "1960-03-01");
    resolved.hypertension = Some("resolved");
    resolved.follow_ups = quarterly.clone();
    people.push(resolved);
    let mut healthy = person("510104001", true, "1960-03-01");
    healthy.follow_ups = quarterly.clone();
    people.push(healthy);
    let mut last_year = person("510104001", false, "1960-03-01");
    last_year.hypertension = Some("active");
    last_year.follow_ups = vec!["2025-06-01"];
    people.push(last_year);
    push(app, "a", &people, 400).await;
    populate(
        app,
        "area,year,sex,age_from,age_to,population\n\
         510104001,2026,male,0,17,40\n\
         510104001,2026,male,18,150,50\n\
         510104001,2026,female,18,150,50\n",
    );
}

#[actix_web::test]
async fn hypertension_management_standard_management_and_control_as_hand_counted() {
    let app = exact_app().await;
    hypertension_city(&app).await;
    let tok = official(&app, "510104");
    let get = |m: &'static str| {
        let app = &app;
        let tok = tok.clone();
        async move {
            evaluated(
                app,
                &tok,
                &format!("{m}/$evaluate-measure?{YEAR}&stratifier=sex"),
            )
            .await
        }
    };
    // Managed: 12; expected: 100 adults x 18.8 % = 18.8, shown as 19.
    let r = get("hypertension-management").await;
    let g = &r["group"][0];
    assert_eq!(count(g, "numerator").as_deref(), Some("12"));
    assert_eq!(count(g, "denominator").as_deref(), Some("19"));
    let ext = r["extension"].as_array().unwrap();
    assert!(
        ext.iter()
            .any(|e| e["url"] == "urn:huimin:StructureDefinition:prevalence"
                && e["extension"][0]["valueString"] == "2026-1")
    );
    assert_eq!(
        strata(&r, "sex", "numerator"),
        [s("female", "6", true), s("male", "6", true)]
    );
    // Standard: 7 of 12.
    let r = get("hypertension-standard-management").await;
    assert_eq!(count(&r["group"][0], "numerator").as_deref(), Some("7"));
    assert_eq!(count(&r["group"][0], "denominator").as_deref(), Some("12"));
    assert_eq!(
        r["group"][0]["measureScore"]["value"].as_f64(),
        Some(0.5833)
    );
    // Control: the latest reading of 2026 on target for 6 of 12.
    let r = get("hypertension-control").await;
    assert_eq!(count(&r["group"][0], "numerator").as_deref(), Some("6"));
    assert_eq!(count(&r["group"][0], "denominator").as_deref(), Some("12"));
    // By sex: 6 of each; standard 4 men and 3 women; the 3 and its no of 3 are below 5.
    let r = get("hypertension-standard-management").await;
    assert_eq!(
        strata(&r, "sex", "numerator"),
        [s("female", "masked", false), s("male", "masked", false)]
    );

    // A series by quarter: each quarter's follow-ups.
    let b = evaluated(
        &app,
        &tok,
        &format!("hypertension-management/$evaluate-measure?{YEAR}&period=quarter&stratifier=sex"),
    )
    .await;
    assert_eq!(b["resourceType"], "Bundle");
    let counts: Vec<String> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| count(&e["resource"]["group"][0], "numerator").unwrap())
        .collect();
    // Q2: the seven quarterly and the five once-a-year follow-ups.
    assert_eq!(counts, ["7", "12", "7", "7"]);
    let starts: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["period"]["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        ["2026-01-01", "2026-04-01", "2026-07-01", "2026-10-01"]
    );

    // CSV: a byte-order mark, the Chinese headers, the whole and each stratum.
    let r = evaluate(
        &app,
        &tok,
        &format!("hypertension-control/$evaluate-measure?{YEAR}&stratifier=sex&_format=csv"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let text = r.text();
    assert!(text.starts_with('\u{feff}'), "{text}");
    let lines: Vec<&str> = text.trim_start_matches('\u{feff}').lines().collect();
    assert!(lines[0].starts_with("指标 measure,"), "{}", lines[0]);
    assert_eq!(
        lines[1],
        "urn:huimin:Measure:hypertension-control,2026-01-01,2026-12-31,510104,all,,6,12,0.5000"
    );
    assert_eq!(lines.len(), 4, "{text}");
    app.assert_stat_cells_exact();
}

/// The whole of a population of a report's group, as a number ("masked" panics).
fn whole(report: &Value, code: &str) -> i64 {
    count(&report["group"][0], code)
        .unwrap_or_else(|| panic!("no {code}: {report}"))
        .parse()
        .unwrap_or_else(|_| panic!("{code} is not shown: {report}"))
}

fn score(report: &Value) -> Option<f64> {
    report["group"][0]["measureScore"]["value"].as_f64()
}

/// This year (the referrals are written now) and the year before it (every event of which
/// is in the past, whenever the test runs).
fn years() -> (i32, i32) {
    let y: i32 = huimin::clock::local_day(huimin::clock::now_millis())[..4]
        .parse()
        .unwrap();
    (y, y - 1)
}

#[actix_web::test]
async fn the_other_indicators_as_hand_counted() {
    let app = exact_app().await;
    registry(&app).await;
    let (this, last) = years();
    let enc = |full: &str, day: &str, code: Option<&str>, booked: Option<&str>| {
        let mut e = json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": full},
            "period": {"start": format!("{day}T09:00:00+08:00"), "end": format!("{day}T09:30:00+08:00")},
            "serviceProvider": {"reference": "Organization/a"}});
        if let Some(c) = code {
            e["type"] = json!([{"coding": [{"system": ENC_TYPE, "code": c}]}]);
        }
        if let Some(a) = booked {
            e["appointment"] = json!([{"reference": a}]);
        }
        json!({"request": {"method": "POST", "url": "Encounter"}, "resource": e})
    };
    let mut entries = Vec::new();
    let patient = |entries: &mut Vec<Value>, seq: u32, birth: &str| {
        let full = format!("urn:uuid:00000000-0000-4000-8000-{seq:012}");
        let id = id_number("510104", &birth.replace('-', ""), (seq - 400) * 2);
        entries.push(json!({"fullUrl": full, "request": {"method": "POST", "url": "Patient"},
            "resource": {"resourceType": "Patient",
                "identifier": [{"system": "urn:huimin:a:mrn", "value": format!("M{seq}")},
                               {"system": "urn:oid:2.16.156.10011.1.3", "value": id}],
                "name": [{"text": format!("居民{seq}")}], "gender": "female", "birthDate": birth,
                "address": [{"use": "home", "extension": [{"url": AREA_CODE, "valueCode": "510104001"}]}],
                "managingOrganization": {"reference": "Organization/a"}}}));
        full
    };
    let day = |md: &str| format!("{last}-{md}");
    // Seven elderly women: six health checks, five family-doctor contracts; each an
    // outpatient visit, the first five booked.
    for i in 0..7u32 {
        let p = patient(&mut entries, 500 + i, "1940-01-01");
        if i < 6 {
            entries.push(enc(&p, &day("03-01"), Some("elderly-health-check"), None));
        }
        if i < 5 {
            entries.push(json!({"request": {"method": "POST", "url": "CareTeam"}, "resource": {
                "resourceType": "CareTeam", "status": "active",
                "category": [{"coding": [{"system": "urn:huimin:CodeSystem:care-team-category", "code": "family-doctor"}]}],
                "subject": {"reference": p}, "period": {"start": format!("{last}-01-01")},
                "managingOrganization": [{"reference": "Organization/a"}]}}));
        }
        let booked = (i < 5).then(|| format!("Appointment/x{i}"));
        entries.push(enc(&p, &day("03-10"), None, booked.as_deref()));
    }
    // Six girls aged two or three: five child health checks, the sixth an outpatient visit.
    for i in 0..6u32 {
        let p = patient(&mut entries, 520 + i, &format!("{}-06-01", last - 2));
        if i < 5 {
            entries.push(enc(&p, &day("04-01"), Some("child-health-check"), None));
        } else {
            entries.push(enc(&p, &day("04-01"), None, None));
        }
    }
    // Ten women with type-2 diabetes: five followed up four times, five once; the latest
    // fasting glucose on target for the first five. Each an outpatient visit, booked for
    // the first five, and an Appointment: six kept, five missed (three days ahead each).
    for i in 0..10u32 {
        let p = patient(&mut entries, 540 + i, "1970-05-01");
        entries.push(json!({"request": {"method": "POST", "url": "Condition"}, "resource": {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]},
            "subject": {"reference": p}, "onsetDateTime": "2019-01-01"}}));
        let follow_ups: &[&str] = if i < 5 {
            &["01-10", "02-10", "03-10", "04-10"]
        } else {
            &["02-10"]
        };
        for d in follow_ups {
            entries.push(enc(&p, &day(d), Some("diabetes-follow-up"), None));
        }
        let glucose = if i < 5 { 6.1 } else { 8.4 };
        for (d, v) in [("01-10", 9.0), ("04-20", glucose)] {
            entries.push(json!({"request": {"method": "POST", "url": "Observation"}, "resource": {
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "1558-6"}]},
                "subject": {"reference": p}, "effectiveDateTime": format!("{}T08:00:00+08:00", day(d)),
                "valueQuantity": {"value": v, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}}));
        }
        let booked = (i < 5).then(|| format!("Appointment/y{i}"));
        entries.push(enc(&p, &day("05-10"), None, booked.as_deref()));
        if i < 11 {
            let status = if i < 6 { "fulfilled" } else { "noshow" };
            entries.push(json!({"request": {"method": "POST", "url": "Appointment"}, "resource": {
                "resourceType": "Appointment", "status": status,
                "start": format!("{}T09:00:00+08:00", day("06-10")), "end": format!("{}T09:30:00+08:00", day("06-10")),
                "created": format!("{}T09:00:00+08:00", day("06-07")),
                "participant": [{"actor": {"reference": p}, "status": "accepted"}]}}));
        }
    }
    // An eleventh Appointment, missed, of the first elderly woman: five no-shows of eleven.
    entries.push(json!({"request": {"method": "POST", "url": "Appointment"}, "resource": {
        "resourceType": "Appointment", "status": "noshow",
        "start": format!("{}T09:00:00+08:00", day("06-10")), "end": format!("{}T09:30:00+08:00", day("06-10")),
        "created": format!("{}T09:00:00+08:00", day("06-07")),
        "participant": [{"actor": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000500"}, "status": "accepted"}]}}));
    // Five encounters that ended an hour ago arrive in time; all of last year's are late.
    let recent = huimin::clock::now_millis() - 3_600_000;
    for i in 0..5u32 {
        let p = format!("urn:uuid:00000000-0000-4000-8000-{:012}", 540 + i);
        entries.push(json!({"request": {"method": "POST", "url": "Encounter"}, "resource": {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": p},
            "period": {"start": huimin::clock::instant(recent - 3_600_000), "end": huimin::clock::instant(recent)},
            "serviceProvider": {"reference": "Organization/a"}}}));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let r = crate::workflow::call(&app, &app.his_of("a"), "POST", "/fhir", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut pop = String::from("area,year,sex,age_from,age_to,population\n");
    for y in [last, this] {
        pop.push_str(&format!(
            "510104001,{y},female,0,6,10\n510104001,{y},female,7,17,10\n\
             510104001,{y},female,18,64,40\n510104001,{y},female,65,150,10\n"
        ));
    }
    populate(&app, &pop);

    let tok = admin(&app);
    let last_year = format!("periodStart={last}-01-01&periodEnd={last}-12-31&stratifier=sex");
    let get = |m: &'static str, q: String| {
        let app = &app;
        let tok = tok.clone();
        async move { evaluated(app, &tok, &format!("{m}/$evaluate-measure?{q}")).await }
    };
    let r = get("elderly-health-management", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (6, 10));
    let r = get("child-health-management", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (5, 10));
    let r = get("family-doctor-signing", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (5, 70));
    let r = get("ehr-use", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (23, 23));
    // Expected diabetes patients: 50 adults x 8.2 % = 4.1.
    let r = get("diabetes-management", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (10, 4));
    let r = get("diabetes-standard-management", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (5, 10));
    let r = get("diabetes-control", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (5, 10));
    // Outpatient visits: 7 + 1 + 10, ten booked.
    let r = get("booking-rate", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (10, 18));
    let r = get("no-show-rate", last_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (5, 11));
    let r = get("booking-lead-time", last_year.clone()).await;
    assert_eq!(whole(&r, "measure-population"), 11);
    assert_eq!(score(&r), Some(3.0));
    assert_eq!(r["group"][0]["measureScore"]["unit"], "d");
    // Every encounter of last year arrived late; the five of an hour ago in time.
    let both = format!("periodStart={last}-01-01&periodEnd={this}-12-31&stratifier=sex");
    let r = get("data-timeliness", both).await;
    // Checks 6 + 5, visits 7 + 1 + 10, follow-ups 5 x 4 + 5, and the five of an hour ago.
    let encounters = 6 + 5 + 7 + 1 + 10 + 25 + 5;
    assert_eq!(
        (whole(&r, "numerator"), whole(&r, "denominator")),
        (5, encounters)
    );

    // Referrals: six up from the clinic to the hospital; one cancelled, five accepted and
    // completed with their return slips.
    let c = crate::workflow::city(&app, 61).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let sr = crate::workflow::request(&c, "referral-up", "Organization/hospital");
        tasks.push(crate::workflow::task_of(
            &crate::workflow::refer(&app, &c.clinic, &sr, 86_400_000).await,
        ));
    }
    let h = &c.hospital;
    for (i, task) in tasks.iter().enumerate() {
        if i == 5 {
            let r = crate::workflow::move_task(&app, &c.clinic, task, "cancelled", |_| {}).await;
            assert_eq!(r.status, 200, "{}", r.text());
            continue;
        }
        let mut t = task.clone();
        for to in ["received", "accepted", "in-progress"] {
            t = crate::workflow::move_task(&app, h, &t, to, |_| {})
                .await
                .json();
        }
        let slip = crate::workflow::return_slip(&app, h, &c.pid).await;
        let done = crate::workflow::move_task(&app, h, &t, "completed", |t| {
            t["output"] = json!([{"type": {"text": "回转单"}, "valueReference": {"reference": format!("DocumentReference/{slip}")}}]);
        })
        .await;
        assert_eq!(done.status, 200, "{}", done.text());
    }
    let this_year =
        format!("periodStart={this}-01-01&periodEnd={this}-12-31&stratifier=organization");
    let r = get("referral-up", this_year.clone()).await;
    assert_eq!(whole(&r, "initial-population"), 6);
    assert_eq!(
        strata(&r, "organization", "initial-population"),
        [s("Organization/clinic", "6", false)]
    );
    let r = get("referral-down", this_year.clone()).await;
    assert_eq!(whole(&r, "initial-population"), 0);
    let r = get("referral-acceptance", this_year.clone()).await;
    assert_eq!((whole(&r, "numerator"), whole(&r, "denominator")), (5, 5));
    assert_eq!(
        strata(&r, "organization", "numerator"),
        [s("Organization/hospital", "5", true)]
    );
    let r = get("referral-completion-time", this_year).await;
    assert_eq!(whole(&r, "measure-population"), 5);
    assert!(score(&r).is_some_and(|d| (0.0..0.01).contains(&d)), "{r}");
    app.assert_stat_cells_exact();
}

#[actix_web::test]
async fn published_counts_are_rounded_to_the_configured_base() {
    // The defaults: cells below 10 masked, counts rounded to a multiple of 5.
    let app = spawn_app_with(|s| s.stats_min_cell = 10).await;
    assert_eq!(app.settings.stats_rounding, 5);
    coverage_city(&app).await;
    let district = official(&app, "510104");
    let report = evaluated(
        &app,
        &district,
        &format!("ehr-coverage/$evaluate-measure?{YEAR}&stratifier=sex,township"),
    )
    .await;
    // 35 residents of 50; women 23 (8 + 15) shown as 25, men 12 as 10; townships 20 and 15.
    assert_eq!(
        count(&report["group"][0], "numerator").as_deref(),
        Some("35")
    );
    assert_eq!(
        strata(&report, "sex", "numerator"),
        [s("female", "25", true), s("male", "10", true)]
    );
    assert_eq!(
        strata(&report, "township", "numerator"),
        [s("510104001", "20", true), s("510104002", "15", true)]
    );
    // The score is the shown counts': 25 of the 30 women of the population.
    let female = &report["group"][0]["stratifier"][0]["stratum"][0];
    assert_eq!(female["measureScore"]["value"].as_f64(), Some(0.8333));
    let suppression = report["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:huimin:StructureDefinition:suppression")
        .unwrap()
        .clone();
    assert_eq!(suppression["extension"][1]["valueInteger"], 5);
}

#[actix_web::test]
async fn a_rebuild_counts_the_stored_record_again() {
    let app = exact_app().await;
    hypertension_city(&app).await;
    let tok = admin(&app);
    let paths = [
        format!("ehr-coverage/$evaluate-measure?{YEAR}&stratifier=sex,organization"),
        format!("hypertension-control/$evaluate-measure?{YEAR}&stratifier=sex,age-band"),
        format!("hypertension-standard-management/$evaluate-measure?{YEAR}"),
    ];
    let mut before = Vec::new();
    for p in &paths {
        before.push(evaluated(&app, &tok, p).await["group"].clone());
    }
    let out = app.cli(&["stats", "rebuild"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("counted"));
    for (p, b) in paths.iter().zip(&before) {
        let after = evaluated(&app, &tok, p).await;
        assert_eq!(&after["group"], b, "{p}");
    }
    let r = evaluated(&app, &tok, &paths[1]).await;
    assert_eq!(count(&r["group"][0], "numerator").as_deref(), Some("6"));
    assert_eq!(count(&r["group"][0], "denominator").as_deref(), Some("12"));
    // A database that kept facts before the aggregates existed has them summed at start-up.
    let store = app.store();
    let wiped: Result<usize, huimin::error::ApiError> = store.write(|tx| {
        use diesel::RunQueryDsl;
        Ok(diesel::sql_query("DELETE FROM stat_cells").execute(tx.conn())?)
    });
    assert!(wiped.unwrap() > 0);
    assert_eq!(
        huimin::services::stats::backfill(&store).unwrap(),
        Some(15),
        "the residents counted"
    );
    assert_eq!(huimin::services::stats::backfill(&store).unwrap(), None);
    store.close();
    for (p, b) in paths.iter().zip(&before) {
        assert_eq!(&evaluated(&app, &tok, p).await["group"], b, "{p}");
    }
    app.assert_stat_cells_exact();
}

/// A calendar month, quarter or year is counted from the aggregates the writes keep; any
/// other run of whole months from the members' own facts. Both count alike.
#[actix_web::test]
async fn the_aggregates_and_the_members_facts_count_alike() {
    let app = exact_app().await;
    hypertension_city(&app).await;
    let tok = admin(&app);
    // Nothing happened in December 2025: the thirteen months count as the year does.
    for name in [
        "ehr-coverage",
        "ehr-use",
        "health-card-issuance",
        "hypertension-management",
        "hypertension-standard-management",
        "hypertension-control",
        "elderly-health-management",
        "family-doctor-signing",
    ] {
        let year = evaluated(&app, &tok, &format!("{name}/$evaluate-measure?{YEAR}")).await;
        let longer = evaluated(
            &app,
            &tok,
            &format!("{name}/$evaluate-measure?periodStart=2025-12-01&periodEnd=2026-12-31"),
        )
        .await;
        assert_eq!(year["group"], longer["group"], "{name}");
    }
    // The second quarter (aggregates): the twelve patients followed up in May or June, none
    // four times, no reading; April and May (members): the seven followed up in May.
    let managed = |from: &str, to: &str, name: &str| {
        format!("{name}/$evaluate-measure?periodStart={from}&periodEnd={to}&stratifier=sex")
    };
    let q2 = evaluated(
        &app,
        &tok,
        &managed("2026-04-01", "2026-06-30", "hypertension-control"),
    )
    .await;
    assert_eq!(whole(&q2, "denominator"), 12);
    assert_eq!(whole(&q2, "numerator"), 0);
    let q2 = evaluated(
        &app,
        &tok,
        &managed(
            "2026-04-01",
            "2026-06-30",
            "hypertension-standard-management",
        ),
    )
    .await;
    assert_eq!(whole(&q2, "denominator"), 12);
    assert_eq!(whole(&q2, "numerator"), 0);
    let spring = evaluated(
        &app,
        &tok,
        &managed("2026-04-01", "2026-05-31", "hypertension-control"),
    )
    .await;
    assert_eq!(whole(&spring, "denominator"), 7);
    // November (aggregates): the seven followed up, six of them on target (the one who is
    // not would be recovered from the six: masked).
    let nov = evaluated(
        &app,
        &tok,
        &managed("2026-11-01", "2026-11-30", "hypertension-control"),
    )
    .await;
    assert_eq!(whole(&nov, "denominator"), 7);
    assert_eq!(
        count(&nov["group"][0], "numerator").as_deref(),
        Some("masked")
    );
    app.assert_stat_cells_exact();
}

/// Twelve institutions' transactions at once, each a hypertension patient of the same
/// township, sex and age with four follow-ups: every one lands in the same cells, and the
/// cells count each exactly once.
#[actix_web::test]
async fn a_rush_of_pushes_into_the_same_cells_counts_each_once() {
    let app = exact_app().await;
    registry(&app).await;
    let pushes = (0..12u32).map(|i| {
        let mut p = person("510104001", true, "1960-03-01");
        p.hypertension = Some("active");
        p.follow_ups = vec!["2026-02-10", "2026-05-10", "2026-08-10", "2026-11-10"];
        p.pressures = vec![("2026-11-10", 128, 82)];
        let app = &app;
        async move { push(app, if i % 2 == 0 { "a" } else { "b" }, &[p], 300 + i).await }
    });
    futures_util::future::join_all(pushes).await;
    let tok = admin(&app);
    let r = evaluated(
        &app,
        &tok,
        &format!("hypertension-standard-management/$evaluate-measure?{YEAR}&stratifier=sex"),
    )
    .await;
    assert_eq!(whole(&r, "denominator"), 12);
    assert_eq!(whole(&r, "numerator"), 12);
    let r = evaluated(&app, &tok, &format!("ehr-use/$evaluate-measure?{YEAR}")).await;
    assert_eq!(whole(&r, "numerator"), 12);
    app.assert_stat_cells_exact();
}
