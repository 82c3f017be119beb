//! The door as a property: for random cities of institutions, residents, records and Consents,
//! and every kind of caller, whatever any path returns (searches with includes, searches across
//! types, history, `$everything`, batch reads and searches, conditional creates that match) is
//! only what a direct read by the same caller returns.

use std::collections::BTreeSet;

use huimin::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, id_number, spawn_app};

/// A small deterministic generator (the test must repeat exactly from its seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const INSTITUTIONS: [&str; 3] = ["h1", "h2", "h3"];

fn token(app: &TestApp, sub: &str, role: Role, org: Option<&str>, user: Option<String>) -> String {
    let scope = match role {
        Role::Resident => "patient/*.rs",
        Role::Doctor => "user/*.cruds",
        _ => "system/*.cruds",
    };
    app.token_at(sub, role, scope, org, user.as_deref())
}

async fn send(
    app: &TestApp,
    tok: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let auth = format!("Bearer {tok}");
    let text = body.map(Value::to_string);
    let r = app
        .send(
            method,
            path,
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/fhir+json"),
            ],
            text.as_deref().map(str::as_bytes),
        )
        .await;
    let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status.as_u16(), json)
}

/// Every resource (`Type/id`) anywhere in a response: bundle entries, nested bundles of batch
/// answers, a single resource.
fn resources_in(v: &Value, out: &mut BTreeSet<String>) {
    if let (Some(t), Some(id)) = (v["resourceType"].as_str(), v["id"].as_str())
        && !matches!(t, "Bundle" | "OperationOutcome" | "Parameters")
    {
        out.insert(format!("{t}/{id}"));
    }
    if let Some(entries) = v["entry"].as_array() {
        for e in entries {
            resources_in(&e["resource"], out);
        }
    }
}

/// A city built from `seed`: the Patients (id, institution) and their clinical records.
async fn city(app: &TestApp, rng: &mut Rng) -> Vec<(String, &'static str)> {
    let admin = token(app, "admin", Role::Admin, None, None);
    let mut patients = Vec::new();
    for r in 0..4u32 {
        let home = INSTITUTIONS[rng.below(3)];
        let his = token(app, &format!("his-{home}"), Role::His, Some(home), None);
        let mut p = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.156.10011.1.3",
                            "value": id_number("510104", &format!("198{r}0101"), 2 * r + 2)}],
            "name": [{"family": format!("居民{r}"), "given": ["甲"]}], "gender": "female",
            "birthDate": format!("198{r}-01-01"),
            "managingOrganization": {"reference": format!("Organization/{home}")}});
        let (s, created) = send(app, &his, "POST", "/fhir/Patient", Some(&p)).await;
        assert_eq!(s, 201, "{created}");
        let pid = created["id"].as_str().unwrap().to_owned();
        // Some residents are registered at a second institution too.
        if rng.chance(40) {
            let other =
                INSTITUTIONS[(INSTITUTIONS.iter().position(|i| *i == home).unwrap() + 1) % 3];
            p["managingOrganization"] = json!({"reference": format!("Organization/{other}")});
            let his2 = token(app, &format!("his-{other}"), Role::His, Some(other), None);
            let (s, again) = send(app, &his2, "POST", "/fhir/Patient", Some(&p)).await;
            assert_eq!(s, 201, "{again}");
        }
        for _ in 0..3 {
            let writer = INSTITUTIONS[rng.below(3)];
            let his = token(app, &format!("his-{writer}"), Role::His, Some(writer), None);
            let subject = json!({"reference": format!("Patient/{pid}")});
            let body = if rng.chance(30) {
                json!({"resourceType": "Condition", "subject": subject,
                       "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20"}]}})
            } else if rng.chance(50) {
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "血压"},
                       "subject": subject})
            } else {
                json!({"resourceType": "Task", "status": "requested", "intent": "order", "for": subject})
            };
            let (s, w) = send(
                app,
                &his,
                "POST",
                &format!("/fhir/{}", body["resourceType"].as_str().unwrap()),
                Some(&body),
            )
            .await;
            assert_eq!(s, 201, "{w}");
        }
        match rng.below(3) {
            0 => {}
            1 => {
                let c = crate::helpers::privacy_consent(&pid, json!({"type": "deny"}));
                assert_eq!(
                    send(app, &admin, "POST", "/fhir/Consent", Some(&c)).await.0,
                    201
                );
            }
            _ => {
                let who = INSTITUTIONS[rng.below(3)];
                let c = crate::helpers::privacy_consent(
                    &pid,
                    json!({"type": "permit", "provision": [{"type": "deny",
                    "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                               "reference": {"reference": format!("Organization/{who}")}}]}]}),
                );
                assert_eq!(
                    send(app, &admin, "POST", "/fhir/Consent", Some(&c)).await.0,
                    201
                );
            }
        }
        patients.push((pid, home));
    }
    patients
}

#[actix_rt::test]
async fn every_path_returns_only_what_a_direct_read_would() {
    for seed in [7u64, 2026, 51] {
        let app = spawn_app().await;
        let mut rng = Rng(seed);
        let patients = city(&app, &mut rng).await;
        let mut callers: Vec<(String, String)> = Vec::new();
        for org in INSTITUTIONS {
            callers.push((
                format!("his {org}"),
                token(&app, &format!("his-{org}"), Role::His, Some(org), None),
            ));
            callers.push((
                format!("doctor {org}"),
                token(
                    &app,
                    &format!("dr-{org}"),
                    Role::Doctor,
                    Some(org),
                    Some("Practitioner/p1".to_owned()),
                ),
            ));
        }
        for (pid, _) in &patients {
            callers.push((
                format!("resident {pid}"),
                token(
                    &app,
                    &format!("r-{pid}"),
                    Role::Resident,
                    None,
                    Some(format!("Patient/{pid}")),
                ),
            ));
        }
        callers.push((
            "official".to_owned(),
            token(&app, "official", Role::Official, None, None),
        ));
        for (who, tok) in &callers {
            let mut paths: Vec<String> = vec![
                "/fhir/Observation?_include=Observation:subject&_count=100".to_owned(),
                "/fhir/Condition?_include=Condition:subject&_count=100".to_owned(),
                "/fhir/Task?_include=Task:patient&_count=100".to_owned(),
                "/fhir/Patient?_revinclude=Observation:subject&_revinclude=Condition:subject&_revinclude=Task:patient&_count=100".to_owned(),
                "/fhir?_type=Patient,Observation,Condition,Task&_count=200".to_owned(),
                "/fhir/Observation/_history?_count=100".to_owned(),
                "/fhir/_history?_count=200".to_owned(),
                "/fhir/Condition?code=http://hl7.org/fhir/sid/icd-10|B20&_count=100".to_owned(),
                "/fhir/Consent?_count=100".to_owned(),
            ];
            for (pid, _) in &patients {
                paths.push(format!("/fhir/Patient/{pid}/$everything?_count=200"));
                paths.push(format!("/fhir/Patient/{pid}/Condition"));
                paths.push(format!(
                    "/fhir/Condition?patient.identifier=urn:oid:2.16.156.10011.1.3|{}",
                    "x"
                ));
            }
            let mut returned = BTreeSet::new();
            for path in &paths {
                let (_, body) = send(&app, tok, "GET", path, None).await;
                resources_in(&body, &mut returned);
            }
            let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "GET", "url": "Condition?_count=100"}},
                {"request": {"method": "GET", "url": format!("Patient/{}", patients[0].0)}},
                {"request": {"method": "GET", "url": format!("Patient/{}", patients[1].0)}}]});
            let (_, body) = send(&app, tok, "POST", "/fhir", Some(&batch)).await;
            if let Some(entries) = body["entry"].as_array() {
                for e in entries {
                    resources_in(&e["resource"], &mut returned);
                }
            }
            // A conditional create that matches returns what it matched.
            for (pid, _) in &patients {
                let probe = json!({"resourceType": "Observation", "status": "final",
                                   "code": {"text": "探测"}, "subject": {"reference": format!("Patient/{pid}")}});
                let auth = format!("Bearer {tok}");
                let crit = format!("subject=Patient/{pid}");
                let r = app
                    .send(
                        "POST",
                        "/fhir/Observation",
                        &[
                            ("Authorization", auth.as_str()),
                            ("Content-Type", "application/fhir+json"),
                            ("If-None-Exist", crit.as_str()),
                            ("Prefer", "return=representation"),
                        ],
                        Some(probe.to_string().as_bytes()),
                    )
                    .await;
                if r.status.as_u16() == 200 {
                    resources_in(&serde_json::from_slice(&r.body).unwrap(), &mut returned);
                }
            }
            for r in &returned {
                let (status, body) = send(&app, tok, "GET", &format!("/fhir/{r}"), None).await;
                assert_eq!(
                    status, 200,
                    "seed {seed}: {who} was given {r} by some path, but a direct read answers {status}: {body}"
                );
            }
        }
    }
}
