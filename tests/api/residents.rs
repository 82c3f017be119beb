//! The resident index: identifiers checked at the edge, institution Patients linked to one
//! golden resident, the resident on every clinical resource, and `$everything`.

use serde_json::{Value, json};

use crate::helpers::{
    FHIR_JSON, GOLDEN, TestApp, entries_of, id_number, is_golden, pages, spawn_app,
};

const ID_CARD: &str = "urn:oid:2.16.156.10011.1.3";
const HEALTH_CARD: &str = "urn:oid:2.16.156.10011.1.19";

/// An institution's Patient: its own MRN system, optionally the ID number (under `id_system`).
fn source(inst: &str, mrn: &str, id: Option<(&str, &str)>, name: &str, birth: &str) -> Value {
    let mut identifiers = vec![json!({"system": format!("urn:his:{inst}:mrn"), "value": mrn})];
    if let Some((system, number)) = id {
        identifiers.push(json!({"system": system, "value": number}));
    }
    json!({
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [{"use": "official", "text": name}],
        "gender": "male",
        "birthDate": birth,
        "telecom": [{"system": "phone", "value": "13800138000"}],
        "address": [{"use": "home", "text": "四川省成都市武侯区人民南路四段1号"}]
    })
}

/// 张伟, born 1980-03-02, at institution `inst`.
fn zhang_wei(inst: &str, mrn: &str, id: Option<(&str, &str)>) -> Value {
    source(inst, mrn, id, "张伟", "1980-03-02")
}

/// Another 张伟 born the same day, with another phone and address: a possible match only.
fn namesake() -> Value {
    let mut p = zhang_wei("e", "E1", None);
    p["telecom"][0]["value"] = json!("13700137000");
    p["address"][0]["text"] = json!("四川省成都市锦江区红星路1号");
    p
}

/// The golden resident a stored source Patient links to (`Patient/<id>` → `<id>`).
fn golden_of(p: &Value) -> String {
    let links = p["link"].as_array().unwrap();
    let refer: Vec<&Value> = links.iter().filter(|l| l["type"] == "refer").collect();
    assert_eq!(refer.len(), 1, "{p}");
    refer[0]["other"]["reference"]
        .as_str()
        .unwrap()
        .strip_prefix("Patient/")
        .unwrap()
        .to_owned()
}

async fn read(app: &TestApp, path: &str) -> Value {
    let r = app.get(path).await;
    assert_eq!(r.status.as_u16(), 200, "{path}: {}", r.text());
    r.json()
}

#[actix_web::test]
async fn identifiers_are_checked_at_the_edge() {
    let app = spawn_app().await;
    let good = id_number("110105", "19491231", 1);
    let mut bad_check = good.clone();
    bad_check.pop();
    bad_check.push(if good.ends_with('0') { '1' } else { '0' });
    for (system, value, why) in [
        (ID_CARD, bad_check.as_str(), "check character"),
        (HEALTH_CARD, "11010519491331001X", "birth date"),
        (
            "urn:oid:2.16.840.1.113883.2.23.1.19.1",
            "1101051949123100",
            "18 characters",
        ),
        (
            "urn:oid:2.16.840.1.113883.2.23.1.19.2",
            "990105194912310014",
            "area code",
        ),
    ] {
        let p = source("a", "M1", Some((system, value)), "张伟", "1949-12-31");
        let issue = app.post_json("/fhir/Patient", &p).await.outcome(422);
        let text = issue["diagnostics"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("Patient.identifier[1] ({system})")),
            "{text}"
        );
        assert!(text.contains(why), "{text}");
        assert!(!text.contains(value), "the number is not echoed: {text}");
    }
    // The sex digit must agree with Patient.gender.
    let woman = id_number("110105", "19491231", 2);
    let p = source("a", "M1", Some((ID_CARD, &woman)), "张伟", "1949-12-31");
    let issue = app.post_json("/fhir/Patient", &p).await.outcome(422);
    assert!(
        issue["diagnostics"].as_str().unwrap().contains("sex digit"),
        "{issue}"
    );
    // Unified social credit codes of institutions.
    let org = |code: &str| {
        json!({"resourceType": "Organization", "name": "市第一人民医院",
               "identifier": [{"system": "urn:oid:2.16.156.10011.1.5", "value": code}]})
    };
    app.post_json("/fhir/Organization", &org("91350100M000100Y44"))
        .await
        .outcome(422);
    app.create(&org("91350100M000100Y43")).await;
    // In a transaction the entry is named and nothing is written.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": source("a", "M2", None, "李娜", "1990-01-01"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": source("a", "M3", Some((ID_CARD, &bad_check)), "王芳", "1949-12-31"),
         "request": {"method": "POST", "url": "Patient"}},
    ]});
    let issue = app.post_json("/fhir", &bundle).await.outcome(422);
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[1]"),
        "{issue}"
    );
    let none = read(&app, "/fhir/Patient?_summary=count").await;
    assert_eq!(none["total"], 0);
    // A valid number is accepted, lower-case check character included.
    let p = source(
        "a",
        "M4",
        Some((ID_CARD, &good.to_lowercase())),
        "张伟",
        "1949-12-31",
    );
    app.create(&p).await;
}

#[actix_web::test]
async fn institution_patients_link_to_one_golden_resident() {
    let app = spawn_app().await;
    let number = id_number("510107", "19800302", 11);
    // Two institutions know the resident by ID card and by health card.
    let a = app
        .create(&zhang_wei("a", "A1", Some((ID_CARD, &number))))
        .await;
    let b = app
        .create(&zhang_wei("b", "B9", Some((HEALTH_CARD, &number))))
        .await;
    let g = golden_of(&a);
    assert_eq!(golden_of(&b), g, "same ID number, same golden resident");
    // A clinic without the ID number: same name, birth date, sex, phone and address.
    let c = app.create(&zhang_wei("c", "C5", None)).await;
    assert_eq!(golden_of(&c), g, "a certain probabilistic match links");
    // A homophone typo (张玮) still matches on pinyin.
    let d = app
        .create(&source("d", "D2", None, "张玮", "1980-03-02"))
        .await;
    assert_eq!(golden_of(&d), g, "homophone typo");
    // Someone else: another name and birth date.
    let mut other = source("c", "C6", None, "刘洋", "1992-07-15");
    other["telecom"][0]["value"] = json!("13900139000");
    let e = app.create(&other).await;
    assert_ne!(golden_of(&e), g);
    // A namesake born the same day with another phone and address: possible, not certain.
    let maybe = namesake();
    let f = app.create(&maybe).await;
    assert_ne!(
        golden_of(&f),
        g,
        "below the upper threshold: its own resident"
    );

    let golden = read(&app, &format!("/fhir/Patient/{g}")).await;
    assert!(is_golden(&golden), "{golden}");
    assert_eq!(golden["active"], true);
    assert_eq!(golden["identifier"][0]["system"], ID_CARD);
    assert_eq!(golden["identifier"][0]["value"], number);
    assert_eq!(golden["identifier"][1]["system"], HEALTH_CARD);
    assert_eq!(golden["name"][0]["text"], "张伟");
    let mut linked: Vec<String> = golden["link"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["type"], "seealso");
            l["other"]["reference"].as_str().unwrap().to_owned()
        })
        .collect();
    linked.sort();
    let mut want: Vec<String> = [&a, &b, &c, &d]
        .iter()
        .map(|p| format!("Patient/{}", p["id"].as_str().unwrap()))
        .collect();
    want.sort();
    assert_eq!(linked, want);
    // The golden resident's index follows its new versions: found by its latest link.
    let by_link = read(
        &app,
        &format!(
            "/fhir/Patient?link=Patient/{}&{GOLDEN}",
            d["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(
        by_link["entry"][0]["resource"]["id"],
        g.as_str(),
        "{by_link}"
    );
    // Searching by the ID number finds the golden resident and the sources that carry it.
    let by_number = read(
        &app,
        &format!("/fhir/Patient?identifier={ID_CARD}|{number}&{GOLDEN}"),
    )
    .await;
    assert_eq!(by_number["entry"].as_array().unwrap().len(), 1);
    // Conditional criteria on the ID number address the institution's own record only.
    let again = app
        .send(
            "POST",
            "/fhir/Patient",
            &[
                ("Content-Type", FHIR_JSON),
                ("If-None-Exist", &format!("identifier={ID_CARD}|{number}")),
            ],
            Some(
                zhang_wei("a", "A1", Some((ID_CARD, &number)))
                    .to_string()
                    .as_bytes(),
            ),
        )
        .await;
    assert_eq!(again.status.as_u16(), 200, "{}", again.text());
    assert_eq!(again.json()["id"], a["id"]);
    // Deleting an institution Patient drops its link from the golden resident.
    let gone = app
        .delete(&format!("/fhir/Patient/{}", c["id"].as_str().unwrap()))
        .await;
    assert_eq!(gone.status.as_u16(), 204, "{}", gone.text());
    let after = read(&app, &format!("/fhir/Patient/{g}")).await;
    let refs: Vec<&str> = after["link"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["other"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 3, "{refs:?}");
    assert!(!refs.contains(&format!("Patient/{}", c["id"].as_str().unwrap()).as_str()));
    // An update keeps the link, and the golden resident is not rewritten for nothing.
    let mut a2 = a.clone();
    a2["telecom"][0]["value"] = json!("13800138001");
    let path = format!("/fhir/Patient/{}", a["id"].as_str().unwrap());
    let r = app.put_json(&path, &a2).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(golden_of(&r.json()), g);
    app.assert_stat_cells_exact();
}

/// A transaction from institution `inst` for the resident with ID number `number`.
fn push(inst: &str, mrn: &str, number: &str, obs_date: &str) -> Value {
    let pat = format!("urn:uuid:{inst}-{mrn}");
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        // The Observation comes before its Patient: it still gets the resident.
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                      "subject": {"reference": pat},
                      "performer": [{"reference": format!("Organization/org-{inst}")}],
                      "effectiveDateTime": obs_date,
                      "valueQuantity": {"value": 128, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": pat,
         "resource": source(inst, mrn, Some((ID_CARD, number)), "王芳", "1975-06-01"),
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": format!("identifier=urn:his:{inst}:mrn|{mrn}")}},
        {"resource": {"resourceType": "Encounter", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                      "subject": {"reference": pat},
                      "period": {"start": obs_date, "end": obs_date}},
         "request": {"method": "POST", "url": "Encounter"}},
    ]})
}

fn keys(entries: &[Value]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["search"]["mode"].as_str().unwrap().to_owned(),
                e["resource"]["resourceType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    k.sort();
    k
}

#[actix_web::test]
async fn everything_about_a_resident_from_every_institution() {
    let app = spawn_app().await;
    for inst in ["a", "b"] {
        let org =
            json!({"resourceType": "Organization", "id": format!("org-{inst}"), "name": inst});
        let r = app
            .put_json(&format!("/fhir/Organization/org-{inst}"), &org)
            .await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    }
    let number = id_number("510104", "19750601", 23);
    for (inst, date) in [("a", "2020-05-01"), ("b", "2024-09-10")] {
        let r = app
            .post_json("/fhir", &push(inst, "M1", &number, date))
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    }
    // Someone else's record stays out.
    let r = app
        .post_json(
            "/fhir",
            &push(
                "a",
                "M2",
                &id_number("510104", "19750601", 45),
                "2021-01-01",
            ),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    let sources = read(&app, "/fhir/Patient?identifier=urn:his:a:mrn|M1").await;
    let source_a = sources["entry"][0]["resource"].clone();
    let g = golden_of(&source_a);
    let want = vec![
        ("include", "Organization"),
        ("include", "Organization"),
        ("match", "Encounter"),
        ("match", "Encounter"),
        ("match", "Observation"),
        ("match", "Observation"),
        ("match", "Patient"),
        ("match", "Patient"),
        ("match", "Patient"),
    ];
    let want: Vec<(String, String)> = want
        .into_iter()
        .map(|(m, t)| (m.to_owned(), t.to_owned()))
        .collect();
    for start in [g.clone(), source_a["id"].as_str().unwrap().to_owned()] {
        let all = entries_of(&pages(&app, &format!("/fhir/Patient/{start}/$everything")).await);
        assert_eq!(keys(&all), want, "from Patient/{start}");
    }
    // Paged two at a time: the same resources, none twice (includes may repeat per page).
    let paged = entries_of(&pages(&app, &format!("/fhir/Patient/{g}/$everything?_count=2")).await);
    let mut matched: Vec<String> = paged
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["fullUrl"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(matched.len(), 7);
    matched.sort();
    matched.dedup();
    assert_eq!(matched.len(), 7, "no resource on two pages");
    // _type, start/end (care dates; resources without one stay), _since.
    let obs = read(
        &app,
        &format!("/fhir/Patient/{g}/$everything?_type=Observation"),
    )
    .await;
    assert_eq!(
        obs["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .count(),
        2
    );
    let recent = read(
        &app,
        &format!(
            "/fhir/Patient/{g}/$everything?start=2023-01-01&_type=Observation,Encounter,Patient"
        ),
    )
    .await;
    let k = keys(recent["entry"].as_array().unwrap());
    assert_eq!(
        k.iter().filter(|(_, t)| t == "Observation").count(),
        1,
        "{k:?}"
    );
    assert_eq!(
        k.iter().filter(|(_, t)| t == "Encounter").count(),
        1,
        "{k:?}"
    );
    assert_eq!(k.iter().filter(|(_, t)| t == "Patient").count(), 3, "{k:?}");
    let later = read(
        &app,
        &format!("/fhir/Patient/{g}/$everything?_since=2999-01-01T00:00:00Z"),
    )
    .await;
    assert!(later.get("entry").is_none(), "{later}");
    // Bad input.
    app.get(&format!("/fhir/Patient/{g}/$everything?_type=Unicorn"))
        .await
        .outcome(400);
    app.get(&format!("/fhir/Patient/{g}/$everything?start=yesterday"))
        .await
        .outcome(400);
    app.get(&format!("/fhir/Patient/{g}/$everything?color=red"))
        .await
        .outcome(400);
    app.get("/fhir/Patient/nobody/$everything")
        .await
        .outcome(404);
}

#[actix_web::test]
async fn two_institutions_pushing_the_same_new_resident_at_once_make_one_golden_resident() {
    let app = spawn_app().await;
    let number = id_number("510108", "20010911", 35);
    let bodies: Vec<String> = (0..16)
        .map(|i| {
            push(
                if i % 2 == 0 { "a" } else { "b" },
                &format!("M{}", i / 2),
                &number,
                "2025-01-01",
            )
            .to_string()
        })
        .collect();
    let replies = futures_util::future::join_all(bodies.iter().map(|b| {
        app.send(
            "POST",
            "/fhir",
            &[("Content-Type", FHIR_JSON)],
            Some(b.as_bytes()),
        )
    }))
    .await;
    for r in &replies {
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    }
    let goldens = read(
        &app,
        &format!("/fhir/Patient?{GOLDEN}&identifier={ID_CARD}|{number}"),
    )
    .await;
    let goldens = goldens["entry"].as_array().unwrap();
    assert_eq!(goldens.len(), 1, "one golden resident");
    let g = goldens[0]["resource"]["id"].as_str().unwrap();
    assert_eq!(goldens[0]["resource"]["link"].as_array().unwrap().len(), 16);
    let all = entries_of(
        &pages(
            &app,
            &format!("/fhir/Patient/{g}/$everything?_type=Observation"),
        )
        .await,
    );
    assert_eq!(all.len(), 16, "every Observation carries the resident");
    app.assert_stat_cells_exact();
}

#[actix_web::test]
async fn match_and_cross_references() {
    let app = spawn_app().await;
    let number = id_number("510107", "19800302", 11);
    let a = app
        .create(&zhang_wei("a", "A1", Some((ID_CARD, &number))))
        .await;
    let b = app.create(&zhang_wei("b", "B9", None)).await;
    let g = golden_of(&a);
    assert_eq!(golden_of(&b), g);
    // A namesake with another phone and address goes to the review list.
    let maybe = namesake();
    let m = app.create(&maybe).await;
    let mg = golden_of(&m);
    assert_ne!(mg, g);

    // $match: by the ID number (certain), and by demographics alone.
    let ask = |p: Value, only_certain: bool| {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": p},
            {"name": "onlyCertainMatches", "valueBoolean": only_certain},
            {"name": "count", "valueInteger": 5}]})
    };
    let by_number = app
        .post_json(
            "/fhir/Patient/$match",
            &ask(
                source("x", "X1", Some((ID_CARD, &number)), "张某", "1980-03-02"),
                true,
            ),
        )
        .await;
    assert_eq!(by_number.status.as_u16(), 200, "{}", by_number.text());
    let by_number = by_number.json();
    assert_eq!(by_number["total"], 1);
    assert_eq!(by_number["entry"][0]["resource"]["id"], g.as_str());
    assert_eq!(by_number["entry"][0]["search"]["score"], 1.0);
    assert_eq!(
        by_number["entry"][0]["search"]["extension"][0]["valueCode"],
        "certain"
    );
    let mut probe = source("x", "X2", None, "张玮", "1980-03-02");
    probe.as_object_mut().unwrap().remove("address");
    let scored = app
        .post_json("/fhir/Patient/$match", &ask(probe, false))
        .await
        .json();
    let entries = scored["entry"]
        .as_array()
        .unwrap_or_else(|| panic!("{scored}"));
    assert_eq!(entries[0]["resource"]["id"], g.as_str(), "{scored}");
    assert_eq!(entries[0]["search"]["extension"][0]["valueCode"], "certain");
    let s0 = entries[0]["search"]["score"].as_f64().unwrap();
    assert!(s0 > 0.5 && s0 < 1.0, "{s0}");
    assert!(entries.iter().all(|e| is_golden(&e["resource"])));
    for e in &entries[1..] {
        assert!(e["search"]["score"].as_f64().unwrap() <= s0);
    }
    // Bad input.
    app.post_json(
        "/fhir/Patient/$match",
        &json!({"resourceType": "Parameters"}),
    )
    .await
    .outcome(400);
    let bad = source(
        "x",
        "X3",
        Some((ID_CARD, "110105194912310021")),
        "张伟",
        "1980-03-02",
    );
    app.post_json("/fhir/Patient/$match", &ask(bad, false))
        .await
        .outcome(422);

    // $ihe-pix: every identifier of the person, from any of them.
    let pix = read(
        &app,
        "/fhir/Patient/$ihe-pix?sourceIdentifier=urn:his:b:mrn|B9",
    )
    .await;
    let params = pix["parameter"].as_array().unwrap();
    let ids: Vec<String> = params
        .iter()
        .filter(|p| p["name"] == "targetIdentifier")
        .map(|p| {
            format!(
                "{}|{}",
                p["valueIdentifier"]["system"].as_str().unwrap(),
                p["valueIdentifier"]["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(ids.contains(&"urn:his:a:mrn|A1".to_owned()), "{ids:?}");
    assert!(ids.contains(&"urn:his:b:mrn|B9".to_owned()), "{ids:?}");
    assert!(ids.contains(&format!("{ID_CARD}|{number}")), "{ids:?}");
    assert!(
        !ids.iter().any(|i| i.contains("E1")),
        "another person's records stay out"
    );
    let targets = params.iter().filter(|p| p["name"] == "targetId").count();
    assert_eq!(
        targets, 3,
        "two institution Patients and the golden resident"
    );
    let only_a = read(
        &app,
        &format!(
            "/fhir/Patient/$ihe-pix?sourceIdentifier={ID_CARD}|{number}&targetSystem=urn:his:a:mrn"
        ),
    )
    .await;
    let only: Vec<&Value> = only_a["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "targetIdentifier")
        .collect();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["valueIdentifier"]["value"], "A1");
    app.get("/fhir/Patient/$ihe-pix?sourceIdentifier=urn:his:a:mrn|nobody")
        .await
        .outcome(404);
    app.get("/fhir/Patient/$ihe-pix").await.outcome(400);

    // The review list: administrators only.
    app.get("/fhir/Patient/$resident-reviews")
        .await
        .outcome(403);
    let admin = app.token_for(huimin::auth::Role::Admin, "system/*.cruds");
    let auth = format!("Bearer {admin}");
    let r = app
        .send(
            "GET",
            "/fhir/Patient/$resident-reviews",
            &[("Authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let reviews = r.json();
    let review = &reviews["parameter"][0]["part"];
    assert_eq!(
        review[0]["valueReference"]["reference"],
        format!("Patient/{}", m["id"].as_str().unwrap())
    );
    assert_eq!(
        review[1]["valueReference"]["reference"],
        format!("Patient/{g}")
    );
    assert_eq!(reviews["parameter"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn merge_and_unmerge_golden_residents() {
    let app = spawn_app().await;
    // One person recorded twice: institution a keyed a wrong ID number.
    let right = id_number("510106", "19660405", 51);
    let wrong = id_number("510106", "19660405", 53);
    for (inst, number, date) in [("a", &wrong, "2021-03-01"), ("b", &right, "2022-06-01")] {
        let r = app
            .post_json("/fhir", &push(inst, "M1", number, date))
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    }
    let source_of = |inst: &str| {
        let app = &app;
        let path = format!("/fhir/Patient?identifier=urn:his:{inst}:mrn|M1");
        async move { read(app, &path).await["entry"][0]["resource"].clone() }
    };
    let a_src = source_of("a").await;
    let (from, to) = (golden_of(&a_src), golden_of(&source_of("b").await));
    assert_ne!(from, to);
    let count = |g: String| {
        let app = &app;
        async move {
            entries_of(
                &pages(
                    app,
                    &format!("/fhir/Patient/{g}/$everything?_type=Observation,Encounter"),
                )
                .await,
            )
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .count()
        }
    };
    assert_eq!((count(from.clone()).await, count(to.clone()).await), (2, 2));

    let params = |reason: &str| {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient", "valueReference": {"reference": format!("Patient/{from}")}},
            {"name": "target-patient", "valueReference": {"reference": format!("Patient/{to}")}},
            {"name": "reason", "valueString": reason}]})
    };
    // Administrators only; a reason is required; only golden residents merge.
    app.post_json("/fhir/Patient/$merge", &params("same person"))
        .await
        .outcome(403);
    let admin = format!(
        "Bearer {}",
        app.token_for(huimin::auth::Role::Admin, "system/*.cruds")
    );
    let as_admin = |path: &str, body: Value| {
        let (app, admin, path) = (&app, admin.clone(), path.to_owned());
        async move {
            app.send(
                "POST",
                &path,
                &[("Authorization", &admin), ("Content-Type", FHIR_JSON)],
                Some(body.to_string().as_bytes()),
            )
            .await
        }
    };
    as_admin("/fhir/Patient/$merge", params(" "))
        .await
        .outcome(400);
    let mut not_golden = params("x");
    not_golden["parameter"][0]["valueReference"]["reference"] =
        json!(format!("Patient/{}", a_src["id"].as_str().unwrap()));
    as_admin("/fhir/Patient/$merge", not_golden)
        .await
        .outcome(422);

    let r = as_admin("/fhir/Patient/$merge", params("核对身份证号后确认为同一人")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let prov = r.json();
    assert_eq!(prov["resourceType"], "Provenance");
    assert_eq!(prov["activity"]["coding"][0]["code"], "merge");
    assert_eq!(prov["reason"][0]["text"], "核对身份证号后确认为同一人");
    // Everything of A is now B's; A points at B; a's Patient links to B.
    assert_eq!((count(from.clone()).await, count(to.clone()).await), (0, 4));
    assert_eq!(golden_of(&source_of("a").await), to);
    let a = read(&app, &format!("/fhir/Patient/{from}")).await;
    assert_eq!(a["active"], false);
    assert_eq!(a["link"][0]["type"], "replaced-by");
    // A new record with the wrong number joins B now.
    let late = app
        .create(&source(
            "c",
            "C1",
            Some((ID_CARD, &wrong)),
            "王芳",
            "1966-04-05",
        ))
        .await;
    assert_eq!(golden_of(&late), to);

    let r = as_admin("/fhir/Patient/$unmerge", params("误合并")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["activity"]["coding"][0]["code"], "unmerge");
    assert_eq!(golden_of(&source_of("a").await), from);
    assert_eq!((count(from.clone()).await, count(to.clone()).await), (2, 2));
    let a = read(&app, &format!("/fhir/Patient/{from}")).await;
    assert_eq!(a["active"], true);
    assert_eq!(a["identifier"][0]["value"], wrong);
    let b = read(&app, &format!("/fhir/Patient/{to}")).await;
    assert!(
        !b["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["other"]["reference"] == format!("Patient/{from}")),
        "{b}"
    );
    let late2 = app
        .create(&source(
            "d",
            "D1",
            Some((ID_CARD, &wrong)),
            "王芳",
            "1966-04-05",
        ))
        .await;
    assert_eq!(
        golden_of(&late2),
        from,
        "the wrong number's key is back with A"
    );
    // Nothing left to unmerge.
    as_admin("/fhir/Patient/$unmerge", params("again"))
        .await
        .outcome(422);
    app.assert_stat_cells_exact();
}

#[actix_web::test]
async fn a_summary_a_doctor_reads_in_ten_seconds() {
    let app = spawn_app().await;
    for inst in ["a", "b"] {
        let org = json!({"resourceType": "Organization", "id": format!("org-{inst}"), "name": format!("{inst}社区卫生服务中心")});
        let r = app
            .put_json(&format!("/fhir/Organization/org-{inst}"), &org)
            .await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    }
    let number = id_number("510105", "19580720", 17);
    for (inst, date) in [("a", "2023-02-01"), ("b", "2025-08-15")] {
        let r = app
            .post_json("/fhir", &push(inst, "M1", &number, date))
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    }
    let pat = read(&app, "/fhir/Patient?identifier=urn:his:b:mrn|M1").await["entry"][0]["resource"]
        .clone();
    let subject = json!({"reference": format!("Patient/{}", pat["id"].as_str().unwrap())});
    for r in [
        json!({"resourceType": "Condition", "subject": subject,
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
               "code": {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.11", "code": "I10.x00x002", "display": "原发性高血压"}]},
               "onsetDateTime": "2019-04-02"}),
        json!({"resourceType": "Condition", "subject": subject,
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
               "code": {"text": "急性上呼吸道感染"}, "onsetDateTime": "2024-01-05"}),
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": subject,
               "medicationCodeableConcept": {"text": "氨氯地平片"}, "authoredOn": "2025-08-15"}),
        json!({"resourceType": "Immunization", "status": "completed", "patient": subject,
               "vaccineCode": {"text": "流感疫苗"}, "occurrenceDateTime": "2025-10-01"}),
    ] {
        app.create(&r).await;
    }
    let r = app
        .get(&format!(
            "/fhir/Patient/{}/$summary",
            pat["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["type"], "document");
    let entries = doc["entry"].as_array().unwrap();
    let comp = &entries[0]["resource"];
    assert_eq!(comp["resourceType"], "Composition");
    assert_eq!(comp["type"]["coding"][0]["code"], "60591-5");
    assert!(
        is_golden(&entries[1]["resource"]),
        "the golden resident comes second"
    );
    let section = |code: &str| {
        comp["section"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["code"]["coding"][0]["code"] == code)
            .cloned()
            .unwrap_or_else(|| panic!("no section {code}"))
    };
    let problems = section("11450-4");
    assert_eq!(
        problems["entry"].as_array().unwrap().len(),
        1,
        "only the active problem"
    );
    assert!(
        problems["text"]["div"]
            .as_str()
            .unwrap()
            .contains("原发性高血压 (I10.x00x002), since 2019-04-02")
    );
    assert_eq!(section("10160-0")["entry"].as_array().unwrap().len(), 1);
    assert!(
        section("48765-2").get("entry").is_none(),
        "no allergies recorded"
    );
    // Two blood pressures of the same code: the latest only, with its date.
    let results = section("30954-2");
    assert_eq!(results["entry"].as_array().unwrap().len(), 1);
    assert!(
        results["text"]["div"]
            .as_str()
            .unwrap()
            .contains("2025-08-15"),
        "{results}"
    );
    let encounters = section("46240-8");
    assert_eq!(encounters["entry"].as_array().unwrap().len(), 2);
    assert!(
        encounters["text"]["div"]
            .as_str()
            .unwrap()
            .starts_with("<div xmlns=\"http://www.w3.org/1999/xhtml\"><ul><li>2025-08-15")
    );
    assert_eq!(section("11369-6")["entry"].as_array().unwrap().len(), 1);
    let sources = comp["section"].as_array().unwrap().last().unwrap().clone();
    let div = sources["text"]["div"].as_str().unwrap();
    assert!(
        div.contains("a社区卫生服务中心") && div.contains("b社区卫生服务中心"),
        "{div}"
    );
    // Every section entry is in the Bundle.
    let full: Vec<&str> = entries
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect();
    for s in comp["section"].as_array().unwrap() {
        for e in s["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let r = e["reference"].as_str().unwrap();
            assert!(full.iter().any(|f| f.ends_with(r)), "{r} missing");
        }
    }
    app.get("/fhir/Patient/nobody/$summary").await.outcome(404);
}

#[actix_web::test]
async fn registries_are_searchable_as_mcsd_expects() {
    let app = spawn_app().await;
    let city = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/city/registry.json");
    let registry: Value = serde_json::from_slice(&std::fs::read(city).unwrap()).unwrap();
    let r = app.post_json("/fhir", &registry).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let orgs: Vec<&Value> = registry["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Organization")
        .collect();
    let want = |f: &dyn Fn(&Value) -> bool| {
        let mut ids: Vec<String> = orgs
            .iter()
            .filter(|o| f(o))
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let got = |q: String| {
        let app = &app;
        async move {
            let mut ids: Vec<String> =
                entries_of(&pages(app, &format!("/fhir/Organization?{q}")).await)
                    .iter()
                    .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                    .collect();
            ids.sort();
            ids
        }
    };
    let first = orgs[0];
    let district = first["address"][0]["extension"][0]["valueCode"]
        .as_str()
        .unwrap();
    let category = first["type"][0]["coding"][0]["code"].as_str().unwrap();
    // An institution of a township inside the district (a nine-digit code) is in it too.
    let area = |o: &Value| {
        o["address"][0]["extension"][0]["valueCode"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let in_district = want(&|o: &Value| area(o).starts_with(district));
    assert!(in_district.len() > 1, "{in_district:?}");
    assert_eq!(got(format!("district={district}")).await, in_district);
    let township = orgs.iter().map(|o| area(o)).find(|a| a.len() == 9).unwrap();
    assert_eq!(
        got(format!("district={township}")).await,
        want(&|o: &Value| area(o) == township)
    );
    let both = want(&|o: &Value| {
        area(o).starts_with(district) && o["type"][0]["coding"][0]["code"] == category
    });
    assert_eq!(
        got(format!(
            "district={district}&type=urn:huimin:institution-category|{category}"
        ))
        .await,
        both
    );
    let uscc = first["identifier"][0]["value"].as_str().unwrap();
    assert_eq!(
        got(format!("identifier=urn:oid:2.16.156.10011.1.5|{uscc}")).await,
        vec![first["id"].as_str().unwrap().to_owned()]
    );
    let name = first["name"].as_str().unwrap();
    assert!(
        got(format!("name={name}"))
            .await
            .contains(&first["id"].as_str().unwrap().to_owned())
    );
    // Practitioners and their roles by institution.
    let roles = read(&app, &format!("/fhir/PractitionerRole?organization=Organization/{}&_include=PractitionerRole:practitioner", first["id"].as_str().unwrap())).await;
    let entries = roles["entry"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["resource"]["resourceType"] == "Practitioner")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["resource"]["resourceType"] == "PractitionerRole")
    );
}

#[actix_web::test]
async fn a_resource_follows_its_patient_across_updates_and_leaves_on_delete() {
    let app = spawn_app().await;
    let a = app
        .create(&source(
            "a",
            "A1",
            Some((ID_CARD, &id_number("510104", "19650505", 11))),
            "李明",
            "1965-05-05",
        ))
        .await;
    let b = app
        .create(&source(
            "a",
            "A2",
            Some((ID_CARD, &id_number("510106", "19720707", 21))),
            "王芳",
            "1972-07-07",
        ))
        .await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let observations = |p: &str| format!("/fhir/Patient/{p}/$everything?_type=Observation");
    let obs = |subject: &str| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
               "subject": {"reference": format!("Patient/{subject}")}})
    };
    let o = app.create(&obs(a_id)).await;
    let oid = o["id"].as_str().unwrap().to_owned();
    assert_eq!(entries_of(&pages(&app, &observations(a_id)).await).len(), 1);
    assert_eq!(entries_of(&pages(&app, &observations(b_id)).await).len(), 0);
    // Recorded against the wrong patient, then corrected: the record moves with it.
    let mut moved = obs(b_id);
    moved["id"] = json!(oid);
    let r = app
        .put_json(&format!("/fhir/Observation/{oid}"), &moved)
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(entries_of(&pages(&app, &observations(a_id)).await).len(), 0);
    assert_eq!(entries_of(&pages(&app, &observations(b_id)).await).len(), 1);
    // The golden resident's record answers the same as its institution Patient's.
    let golden = golden_of(&read(&app, &format!("/fhir/Patient/{b_id}")).await);
    assert_eq!(
        entries_of(&pages(&app, &observations(&golden)).await).len(),
        1
    );
    let r = app.delete(&format!("/fhir/Observation/{oid}")).await;
    assert!(r.status.is_success(), "{}", r.text());
    assert_eq!(entries_of(&pages(&app, &observations(b_id)).await).len(), 0);
    app.assert_stat_cells_exact();
}

#[actix_web::test]
async fn data_stored_before_the_resident_index_is_linked_by_a_command() {
    use diesel::{Connection, RunQueryDsl};
    let app = spawn_app().await;
    let number = id_number("510112", "19700101", 71);
    let p = app
        .create(&source(
            "a",
            "A1",
            Some((ID_CARD, &number)),
            "赵强",
            "1970-01-01",
        ))
        .await;
    let pid = p["id"].as_str().unwrap().to_owned();
    app.create(&json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "subject": {"reference": format!("Patient/{pid}")}}))
        .await;
    // As a database from before the resident index: no resident keys, no resident column.
    let forget = [
        "UPDATE resources SET resident = NULL",
        "DELETE FROM match_keys WHERE criteria LIKE 'resident|%'",
    ];
    match &app.database_url() {
        Some(url) => {
            let mut c = diesel::pg::PgConnection::establish(url).unwrap();
            for sql in forget {
                diesel::sql_query(sql).execute(&mut c).unwrap();
            }
        }
        None => {
            let path = app.settings.data_dir.join("huimin.db");
            let mut c =
                diesel::sqlite::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            for sql in forget {
                diesel::sql_query(sql).execute(&mut c).unwrap();
            }
        }
    }
    let observations = format!("/fhir/Patient/{pid}/$everything?_type=Observation");
    assert_eq!(entries_of(&pages(&app, &observations).await).len(), 0);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_huimin"));
    cmd.args(["residents", "relink"])
        .env("HUIMIN_DATA_DIR", &app.settings.data_dir)
        .env("HUIMIN_LOG_LEVEL", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("HUIMIN_") && !k.starts_with("HUIMIN_TEST_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HUIMIN_DATA_DIR", &app.settings.data_dir);
    if let Some(url) = app.database_url() {
        cmd.env("HUIMIN_DATABASE_URL", url);
    }
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The institution Patient and the golden resident (whose own resident went too).
    assert!(
        said.contains("linked 2 Patient(s) and 1 other resource(s)"),
        "{said}"
    );
    assert_eq!(entries_of(&pages(&app, &observations).await).len(), 1);
    let linked = read(&app, &format!("/fhir/Patient/{pid}")).await;
    let g = golden_of(&linked);
    let golden = read(&app, &format!("/fhir/Patient/{g}")).await;
    assert!(is_golden(&golden));
    // Again: nothing left to link.
    let out = cmd.output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("linked 0 Patient(s) and 0 other resource(s)")
    );
    app.assert_stat_cells_exact();
}

/// Two applications in one process, each with its own match thresholds, interleaving their
/// writes: each links by its own settings (no setting is process-wide).
#[actix_web::test]
async fn two_applications_in_one_process_each_link_by_their_own_thresholds() {
    let usual = spawn_app().await;
    let strict = crate::helpers::spawn_app_with(|s| {
        s.resident_match_upper = 100.0;
        s.resident_match_lower = 100.0;
    })
    .await;
    let number = id_number("510107", "19800302", 11);
    let mut linked = Vec::new();
    for app in [&strict, &usual] {
        let a = app
            .create(&zhang_wei("a", "A1", Some((ID_CARD, &number))))
            .await;
        linked.push(golden_of(&a));
    }
    // The clinic's record without the ID number, written to each in turn.
    let c_usual = usual.create(&zhang_wei("c", "C5", None)).await;
    let c_strict = strict.create(&zhang_wei("c", "C5", None)).await;
    assert_eq!(
        golden_of(&c_usual),
        linked[1],
        "the default thresholds link a certain match"
    );
    assert_ne!(
        golden_of(&c_strict),
        linked[0],
        "an upper threshold above any score links nothing by demographics"
    );
    // And again the other way round, after the strict application wrote.
    let d_usual = usual
        .create(&source("d", "D2", None, "张玮", "1980-03-02"))
        .await;
    assert_eq!(golden_of(&d_usual), linked[1]);
}
