//! Booking from the slot pool: hospitals publish Schedules and Slots of their own institution;
//! residents and hospitals `$hold` and `$book` places; the database counts the places, so a
//! rush books exactly a Slot's capacity; holds expire; cancelling frees the place; the rules
//! refuse by name.

use huimin::auth::Role;
use huimin::clock;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, id_number, patient, spawn_app, spawn_app_with};

const DAY_MS: i64 = 86_400_000;
const CAPACITY: &str = "urn:huimin:StructureDefinition:slot-capacity";
const RELEASE: &str = "urn:huimin:StructureDefinition:slot-release";
const RESERVE: &str = "urn:huimin:StructureDefinition:slot-referral-reserve";
const RESERVE_UNTIL: &str = "urn:huimin:StructureDefinition:slot-reserve-until";

async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: &Value) -> Reply {
    let auth = format!("Bearer {token}");
    app.send(
        method,
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/fhir+json"),
        ],
        Some(body.to_string().as_bytes()),
    )
    .await
}

/// A hospital's Schedule (its own PractitionerRole as actor).
async fn schedule(app: &TestApp, his: &str, org: &str) -> String {
    let role = app
        .create_as(
            his,
            &json!({"resourceType": "PractitionerRole", "organization": {"reference": format!("Organization/{org}")}}),
        )
        .await;
    let s = app
        .create_as(
            his,
            &json!({
                "resourceType": "Schedule",
                "actor": [{"reference": format!("PractitionerRole/{}", role["id"].as_str().unwrap())}],
                "specialty": [{"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.2", "code": "03"}]}]
            }),
        )
        .await;
    s["id"].as_str().unwrap().to_owned()
}

/// A Slot of `schedule` starting `days` days from now, with extensions.
fn slot(schedule: &str, days: i64, extension: Value) -> Value {
    let start = clock::now_millis() + days * DAY_MS;
    json!({
        "resourceType": "Slot",
        "extension": extension,
        "schedule": {"reference": format!("Schedule/{schedule}")},
        "status": "free",
        "specialty": [{"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.2", "code": "03"}]}],
        "start": clock::instant(start),
        "end": clock::instant(start + 15 * 60_000)
    })
}

/// Publish a Slot as institution `his`; its id.
async fn publish(app: &TestApp, his: &str, slot: Value) -> String {
    app.create_as(his, &slot).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn capacity(n: i64) -> Value {
    json!([{"url": CAPACITY, "valueInteger": n}])
}

/// A resident: an institution Patient with an ID number (so it has a golden resident), and a
/// resident token whose `fhirUser` is that Patient.
async fn resident(app: &TestApp, his: &str, seq: u32) -> (String, String) {
    let mut p = patient(&format!("MRN-{seq}"));
    p["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "urn:oid:2.16.156.10011.1.3", "value": id_number("510104", "19800101", seq * 2)}));
    let pid = app.create_as(his, &p).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tok = app.token_as(
        &format!("resident-{seq}"),
        Role::Resident,
        "patient/*.cruds",
        Some(&format!("Patient/{pid}")),
    );
    (pid, tok)
}

fn booking(slot: &str, pid: &str, status: &str) -> Value {
    json!({
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": {
            "resourceType": "Appointment",
            "status": status,
            "slot": [{"reference": format!("Slot/{slot}")}],
            "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "needs-action"}]
        }}]
    })
}

/// `$book` (or `$hold`) of a place of `slot` for `pid`, proposed as `$find` would.
async fn book(app: &TestApp, token: &str, slot: &str, pid: &str) -> Reply {
    let body = booking(slot, pid, "proposed");
    call(app, token, "POST", "/fhir/Appointment/$book", &body).await
}

async fn hold(app: &TestApp, token: &str, slot: &str, pid: &str) -> Reply {
    let body = booking(slot, pid, "proposed");
    call(app, token, "POST", "/fhir/Appointment/$hold", &body).await
}

/// `$book` with the booked Appointment `appointment` (its JSON id) as cancelled.
async fn cancel(app: &TestApp, token: &str, slot: &str, pid: &str, appointment: &Value) -> Reply {
    let mut body = booking(slot, pid, "cancelled");
    body["parameter"][0]["resource"]["id"] = appointment.clone();
    call(app, token, "POST", "/fhir/Appointment/$book", &body).await
}

/// `$book` of the held Appointment `appointment` (`appointment-reference`).
async fn book_held(app: &TestApp, token: &str, appointment: &str) -> Reply {
    let body = json!({
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-reference", "valueReference": {"reference": format!("Appointment/{appointment}")}}]
    });
    call(app, token, "POST", "/fhir/Appointment/$book", &body).await
}

/// `$book` of an Appointment as `$find` proposed it (`appointment-resource`).
async fn book_proposed(app: &TestApp, token: &str, proposed: &Value) -> Reply {
    let body = json!({"resourceType": "Parameters", "parameter": [{"name": "appointment-resource", "resource": proposed}]});
    call(app, token, "POST", "/fhir/Appointment/$book", &body).await
}

fn issue(r: &Reply) -> (String, String) {
    let oo = r.json();
    (
        oo["issue"][0]["code"].as_str().unwrap_or("").to_owned(),
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

/// A 409 whose text names what refused (a Slot's state or a rule).
fn refused(r: &Reply, names: &str) {
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(issue(r).1.contains(names), "{:?}", issue(r));
}

async fn slot_status(app: &TestApp, his: &str, id: &str) -> String {
    app.get_as(his, &format!("/fhir/Slot/{id}")).await.json()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[actix_rt::test]
async fn a_rush_books_exactly_each_slots_capacity() {
    let app = spawn_app().await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let one = publish(&app, &his, slot(&sched, 3, capacity(1))).await;
    let three = publish(&app, &his, slot(&sched, 4, capacity(3))).await;
    let mut residents = Vec::new();
    for seq in 0..12 {
        residents.push(resident(&app, &his, 100 + seq).await);
    }
    for (slot_id, cap) in [(&one, 1), (&three, 3)] {
        let replies = futures_util::future::join_all(residents.iter().map(|(pid, tok)| {
            let body = booking(slot_id, pid, "proposed");
            let app = &app;
            async move { call(app, tok, "POST", "/fhir/Appointment/$book", &body).await }
        }))
        .await;
        let booked: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
        let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 409).collect();
        assert_eq!(
            booked.len(),
            cap,
            "{:?}",
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        assert_eq!(refused.len(), 12 - cap);
        for r in &booked {
            assert_eq!(r.json()["status"], "booked");
            assert_eq!(r.json()["slot"][0]["reference"], format!("Slot/{slot_id}"));
        }
        for r in &refused {
            assert_eq!(
                issue(r),
                ("conflict".into(), format!("Slot/{slot_id} is full"))
            );
        }
        assert_eq!(slot_status(&app, &his, slot_id).await, "busy");
        // The hospital sees every booking of its Slot.
        let listed = app
            .get_as(
                &his,
                &format!("/fhir/Appointment?slot=Slot/{slot_id}&_total=accurate"),
            )
            .await
            .json();
        assert_eq!(listed["total"], cap, "{listed}");
    }
}

#[actix_rt::test]
async fn a_hold_keeps_its_place_until_it_expires_and_cancelling_frees_a_place() {
    let app = spawn_app_with(|s| s.booking_hold_seconds = 1).await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let id = publish(&app, &his, slot(&sched, 3, capacity(1))).await;
    let (a, a_tok) = resident(&app, &his, 201).await;
    let (b, b_tok) = resident(&app, &his, 202).await;

    let held = hold(&app, &a_tok, &id, &a).await;
    assert_eq!(held.status, 200, "{}", held.text());
    let held = held.json();
    assert_eq!(held["status"], "pending");
    assert!(held["extension"][0]["valueInstant"].is_string(), "{held}");
    let refused = book(&app, &b_tok, &id, &b).await;
    assert_eq!(refused.status, 409);

    // The hold expires by itself: the place is free again, the held Appointment cancelled.
    actix_rt::time::sleep(std::time::Duration::from_millis(1300)).await;
    let booked = book(&app, &b_tok, &id, &b).await;
    assert_eq!(booked.status, 200, "{}", booked.text());
    let expired = app
        .get_as(
            &his,
            &format!("/fhir/Appointment/{}", held["id"].as_str().unwrap()),
        )
        .await
        .json();
    assert_eq!(expired["status"], "cancelled");
    let late = book_held(&app, &a_tok, held["id"].as_str().unwrap()).await;
    assert_eq!(late.status, 409, "{}", late.text());

    // Cancelling frees the place at once.
    let cancelled = cancel(&app, &b_tok, &id, &b, &booked.json()["id"]).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert_eq!(slot_status(&app, &his, &id).await, "free");
    let again = book(&app, &a_tok, &id, &a).await;
    assert_eq!(again.status, 200, "{}", again.text());

    // A hold nobody books after frees its place by itself (the expiry runs in the background).
    let quiet = publish(&app, &his, slot(&sched, 6, capacity(1))).await;
    let held = hold(&app, &a_tok, &quiet, &a).await.json();
    assert_eq!(slot_status(&app, &his, &quiet).await, "busy");
    actix_rt::time::sleep(std::time::Duration::from_millis(3000)).await;
    let expired = app
        .get_as(
            &his,
            &format!("/fhir/Appointment/{}", held["id"].as_str().unwrap()),
        )
        .await
        .json();
    assert_eq!(expired["status"], "cancelled", "{expired}");
    assert_eq!(slot_status(&app, &his, &quiet).await, "free");

    // A hold booked before it expires becomes booked.
    let id2 = publish(&app, &his, slot(&sched, 5, capacity(1))).await;
    let held = hold(&app, &b_tok, &id2, &b).await.json();
    let booked = book_held(&app, &b_tok, held["id"].as_str().unwrap()).await;
    assert_eq!(booked.status, 200, "{}", booked.text());
    assert_eq!(booked.json()["status"], "booked");
}

#[actix_rt::test]
async fn the_slot_and_the_rules_refuse_by_name() {
    let app = spawn_app_with(|s| s.booking_max_active = 2).await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let (a, tok) = resident(&app, &his, 301).await;
    let create = |body: Value| {
        let (app, his) = (&app, his.clone());
        async move {
            app.create_as(&his, &body).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // Not released yet.
    let release = clock::instant(clock::now_millis() + DAY_MS);
    let later = create(slot(
        &sched,
        3,
        json!([{"url": RELEASE, "valueDateTime": release}]),
    ))
    .await;
    let r = book(&app, &tok, &later, &a).await;
    refused(&r, "opens for booking at");

    // Its free places kept for referred residents.
    let until = clock::instant(clock::now_millis() + DAY_MS);
    let kept = create(slot(
        &sched,
        3,
        json!([{"url": CAPACITY, "valueInteger": 1}, {"url": RESERVE, "valueInteger": 1}, {"url": RESERVE_UNTIL, "valueDateTime": until}]),
    ))
    .await;
    let r = book(&app, &tok, &kept, &a).await;
    refused(&r, "kept for referred residents");

    // One booking per specialty per day.
    let first = create(slot(&sched, 3, capacity(2))).await;
    let same_day = create(slot(&sched, 3, capacity(2))).await;
    let r = book(&app, &tok, &first, &a).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = book(&app, &tok, &same_day, &a).await;
    assert_eq!(r.status, 409);
    assert_eq!(issue(&r).0, "business-rule");
    assert!(
        issue(&r).1.starts_with("rule one-per-specialty-per-day"),
        "{:?}",
        issue(&r)
    );

    // At most two active bookings (this app's setting).
    let second = create(slot(&sched, 6, capacity(2))).await;
    let third = create(slot(&sched, 7, capacity(2))).await;
    let r = book(&app, &tok, &second, &a).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = book(&app, &tok, &third, &a).await;
    refused(&r, "rule max-active-bookings");

    // A Slot cannot shrink below its taken places.
    let pair = create(slot(&sched, 8, capacity(2))).await;
    for seq in [311, 312] {
        let (p, _) = resident(&app, &his, seq).await;
        let r = book(&app, &his, &pair, &p).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut shrunk = app.get_as(&his, &format!("/fhir/Slot/{pair}")).await.json();
    assert_eq!(shrunk["status"], "busy");
    shrunk["extension"] = capacity(1);
    let r = call(&app, &his, "PUT", &format!("/fhir/Slot/{pair}"), &shrunk).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        issue(&r).1,
        format!("Slot/{pair} has 2 places taken; its capacity cannot be lower")
    );
}

#[actix_rt::test]
async fn only_the_institution_publishes_and_books_go_through_the_pool() {
    let app = spawn_app().await;
    let (h1, h2) = (app.his_of("h1"), app.his_of("h2"));
    let sched = schedule(&app, &h1, "h1").await;

    // Another institution cannot publish on h1's Schedule, nor name h1's actors.
    let r = call(
        &app,
        &h2,
        "POST",
        "/fhir/Slot",
        &slot(&sched, 3, capacity(1)),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let h1_role = app
        .get_as(&h1, &format!("/fhir/Schedule/{sched}"))
        .await
        .json()["actor"][0]
        .clone();
    let r = call(
        &app,
        &h2,
        "POST",
        "/fhir/Schedule",
        &json!({"resourceType": "Schedule", "actor": [h1_role]}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());

    let id = app.create_as(&h1, &slot(&sched, 3, capacity(2))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (a, a_tok) = resident(&app, &h1, 401).await;
    let (b, b_tok) = resident(&app, &h1, 402).await;

    // Another institution's system does not book on h1's Slots; a resident books for themselves.
    let r = book(&app, &h2, &id, &a).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // A resident booking another's Patient learns nothing of it: as for no Patient at all.
    let r = book(&app, &b_tok, &id, &a).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let unknown = book(&app, &b_tok, &id, "no-such-patient").await;
    assert_eq!(
        issue(&r).1.replace(&a, "x"),
        issue(&unknown).1.replace("no-such-patient", "x")
    );
    let official = app.token_as("official-1", Role::Official, "user/*.cruds", None);
    let r = book(&app, &official, &id, &a).await;
    assert_eq!(r.status, 403, "{}", r.text());

    // Real-name: the patient must belong to a resident of the index.
    let r = book(&app, &h1, &id, "no-such-patient").await;
    assert_eq!(r.status, 422, "{}", r.text());

    // The hospital books for a resident on its own Slot.
    let booked = book(&app, &h1, &id, &a).await;
    assert_eq!(booked.status, 200, "{}", booked.text());
    let appointment = booked.json()["id"].as_str().unwrap().to_owned();

    // Another resident learns nothing of it, and cannot cancel it.
    let r = cancel(&app, &b_tok, &id, &a, &json!(appointment)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = app
        .get_as(&b_tok, &format!("/fhir/Appointment/{appointment}"))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    // Its resident sees it.
    let mine = app
        .get_as(&a_tok, &format!("/fhir/Appointment?patient=Patient/{a}"))
        .await
        .json();
    assert_eq!(mine["entry"].as_array().map_or(0, Vec::len), 1, "{mine}");
    let _ = b;

    // Appointments on the pool are not written around it.
    let direct = json!({
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": format!("Slot/{id}")}],
        "participant": [{"actor": {"reference": format!("Patient/{a}")}, "status": "accepted"}]
    });
    let r = call(&app, &h1, "POST", "/fhir/Appointment", &direct).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = call(
        &app,
        &h1,
        "DELETE",
        &format!("/fhir/Appointment/{appointment}"),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
}

#[actix_rt::test]
async fn find_proposes_the_places_one_may_book_now_earliest_first() {
    let app = spawn_app().await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let create = |body: Value| {
        let (app, his) = (&app, his.clone());
        async move {
            app.create_as(&his, &body).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let later = create(slot(&sched, 4, capacity(2))).await;
    let sooner = create(slot(&sched, 3, capacity(1))).await;
    let full = create(slot(&sched, 2, capacity(1))).await;
    let mut other = slot(&sched, 5, capacity(1));
    other["specialty"] =
        json!([{"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.2", "code": "05"}]}]);
    let other = create(other).await;
    let release = clock::instant(clock::now_millis() + DAY_MS);
    let _unreleased = create(slot(
        &sched,
        3,
        json!([{"url": RELEASE, "valueDateTime": release}]),
    ))
    .await;
    let (a, a_tok) = resident(&app, &his, 251).await;
    let (b, b_tok) = resident(&app, &his, 252).await;
    let r = book(&app, &b_tok, &full, &b).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let window = |extra: &str| {
        format!(
            "/fhir/Appointment/$find?start={}&end={}{extra}",
            clock::instant(clock::now_millis()),
            clock::instant(clock::now_millis() + 10 * DAY_MS)
        )
    };
    let slots_of = |bundle: &Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                assert_eq!(e["resource"]["status"], "proposed");
                e["resource"]["slot"][0]["reference"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("Slot/")
                    .to_owned()
            })
            .collect()
    };
    let found = app.get_as(&a_tok, &window("")).await;
    assert_eq!(found.status, 200, "{}", found.text());
    let found = found.json();
    assert_eq!(found["total"], 3, "{found}");
    assert_eq!(
        slots_of(&found),
        vec![sooner.clone(), later.clone(), other.clone()]
    );

    // Narrowed by specialty, paged by _count; POST with Parameters proposes for the patient.
    let narrowed = app
        .get_as(
            &a_tok,
            &window("&specialty=urn:oid:2.16.156.10011.2.3.3.2|03&_count=1"),
        )
        .await
        .json();
    assert_eq!(
        (narrowed["total"].clone(), slots_of(&narrowed)),
        (json!(2), vec![sooner.clone()])
    );
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDateTime": clock::instant(clock::now_millis())},
        {"name": "end", "valueDateTime": clock::instant(clock::now_millis() + 10 * DAY_MS)},
        {"name": "patient-reference", "valueReference": {"reference": format!("Patient/{a}")}}
    ]});
    let posted = call(&app, &a_tok, "POST", "/fhir/Appointment/$find", &params).await;
    assert_eq!(posted.status, 200, "{}", posted.text());
    let proposed = posted.json()["entry"][0]["resource"].clone();
    assert!(
        proposed["participant"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["actor"]["reference"] == format!("Patient/{a}")),
        "{proposed}"
    );
    // What $find proposes, $book books.
    let booked = book_proposed(&app, &a_tok, &proposed).await;
    assert_eq!(booked.status, 200, "{}", booked.text());

    // Bad requests are named; another resident's patient answers as absent.
    let r = app
        .get_as(&a_tok, "/fhir/Appointment/$find?start=2026-01-01")
        .await;
    assert_eq!(r.status, 400);
    let r = app.get_as(&a_tok, &window("&colour=blue")).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("colour"));
    let r = app
        .get_as(&a_tok, &window(&format!("&patient-reference=Patient/{b}")))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[actix_rt::test]
async fn the_capability_statement_lists_the_booking_operations() {
    let app = spawn_app().await;
    let cs = app.get("/fhir/metadata").await.json();
    let appointment = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Appointment")
        .unwrap()
        .clone();
    let names: Vec<&str> = appointment["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["find", "hold", "book"]);
}

#[actix_rt::test]
async fn a_booking_changes_status_by_rest_as_its_rules_allow() {
    let app = spawn_app_with(|s| s.booking_no_show_limit = 1).await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let id = publish(&app, &his, slot(&sched, 3, capacity(1))).await;
    let (a, a_tok) = resident(&app, &his, 271).await;
    let patch = |status: &str| json!([{"op": "replace", "path": "/status", "value": status}]);
    let send_patch = |tok: String, appointment: String, body: Value| {
        let app = &app;
        async move {
            let auth = format!("Bearer {tok}");
            app.send(
                "PATCH",
                &format!("/fhir/Appointment/{appointment}"),
                &[
                    ("Authorization", auth.as_str()),
                    ("Content-Type", "application/json-patch+json"),
                ],
                Some(body.to_string().as_bytes()),
            )
            .await
        }
    };

    // The resident cancels by PATCH: the place is free at once.
    let booked = book(&app, &his, &id, &a).await.json();
    let appointment = booked["id"].as_str().unwrap().to_owned();
    let r = send_patch(a_tok.clone(), appointment.clone(), patch("cancelled")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(slot_status(&app, &his, &id).await, "free");

    // The hospital marks arrival by PUT and fulfilment by PATCH; the resident cannot.
    let booked = book(&app, &his, &id, &a).await.json();
    let appointment = booked["id"].as_str().unwrap().to_owned();
    let r = send_patch(a_tok.clone(), appointment.clone(), patch("arrived")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let mut arrived = booked.clone();
    arrived["status"] = json!("arrived");
    let r = call(
        &app,
        &his,
        "PUT",
        &format!("/fhir/Appointment/{appointment}"),
        &arrived,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "arrived");
    let mut moved = r.json();
    moved["start"] = json!(clock::instant(clock::now_millis() + 9 * DAY_MS));
    let r = call(
        &app,
        &his,
        "PUT",
        &format!("/fhir/Appointment/{appointment}"),
        &moved,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = send_patch(his.clone(), appointment.clone(), patch("fulfilled")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send_patch(his.clone(), appointment.clone(), patch("booked")).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        issue(&r).1,
        "an Appointment cannot move from fulfilled to booked"
    );

    // A no-show pauses the resident's booking (limit 1 in this app).
    let other = publish(&app, &his, slot(&sched, 4, capacity(1))).await;
    let missed = book(&app, &his, &other, &a).await.json();
    let r = send_patch(
        his.clone(),
        missed["id"].as_str().unwrap().to_owned(),
        patch("noshow"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let third = publish(&app, &his, slot(&sched, 6, capacity(1))).await;
    let r = book(&app, &a_tok, &third, &a).await;
    refused(&r, "rule no-show-pause");
}

#[actix_rt::test]
async fn one_residents_simultaneous_bookings_respect_the_cap() {
    let app = spawn_app_with(|s| s.booking_max_active = 2).await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let mut slots = Vec::new();
    for day in 2..8 {
        slots.push(publish(&app, &his, slot(&sched, day, capacity(5))).await);
    }
    let (a, tok) = resident(&app, &his, 281).await;
    let replies = futures_util::future::join_all(slots.iter().map(|s| {
        let body = booking(s, &a, "proposed");
        let (app, tok) = (&app, tok.clone());
        async move { call(app, &tok, "POST", "/fhir/Appointment/$book", &body).await }
    }))
    .await;
    let booked = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        booked,
        2,
        "{:?}",
        replies
            .iter()
            .map(|r| (r.status, r.text()))
            .collect::<Vec<_>>()
    );
    assert!(
        replies
            .iter()
            .filter(|r| r.status != 200)
            .all(|r| r.status == 409 && issue(r).1.starts_with("rule max-active-bookings"))
    );
}

#[actix_rt::test]
async fn a_guardian_books_for_the_child_they_guard() {
    let app = spawn_app().await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let id = publish(&app, &his, slot(&sched, 3, capacity(2))).await;
    let mut child = patient("MRN-CHILD");
    child["birthDate"] = json!("2019-05-01");
    child["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "urn:oid:2.16.156.10011.1.3", "value": id_number("510104", "20190501", 622)}));
    let child = app.create_as(&his, &child).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (adult, _) = resident(&app, &his, 291).await;
    let mother = app
        .create_as(
            &his,
            &json!({"resourceType": "RelatedPerson", "active": true,
                    "patient": {"reference": format!("Patient/{child}")},
                    "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let guardian = app.token_as(
        "guardian-1",
        Role::Resident,
        "patient/*.cruds",
        Some(&format!("RelatedPerson/{mother}")),
    );
    let r = book(&app, &guardian, &id, &child).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The guardian acts for the child only.
    let r = book(&app, &guardian, &id, &adult).await;
    assert_eq!(r.status, 422, "as for no such Patient: {}", r.text());
}

/// An institution of the registry with a WS 218 category (A100 hospital, B100 community
/// centre), written by the administrator.
async fn institution(app: &TestApp, id: &str, category: &str, district: &str) {
    let org = json!({
        "resourceType": "Organization", "id": id, "active": true, "name": id,
        "type": [{"coding": [{"system": "urn:huimin:institution-category", "code": category}]}],
        "address": [{"district": district, "extension": [{"url": "urn:huimin:StructureDefinition:area-code", "valueCode": district}]}]
    });
    let r = app
        .put_json(&format!("/fhir/Organization/{id}"), &org)
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
}

/// An active up-referral of `org` for `pid` to `to`, with identifier `value`; its id.
async fn referral(app: &TestApp, his: &str, pid: &str, to: &str, value: &str) -> String {
    let sr = json!({
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:huimin:test:referral", "value": value}],
        "status": "active", "intent": "order",
        "category": [{"coding": [{"system": "urn:huimin:CodeSystem:request-category", "code": "referral-up"}]}],
        "subject": {"reference": format!("Patient/{pid}")},
        "performer": [{"reference": format!("Organization/{to}")}]
    });
    app.create_as(his, &sr).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A `$book` of a place of `slot` for `pid` based on the referral `sr`.
async fn book_referred(app: &TestApp, token: &str, slot: &str, pid: &str, sr: &str) -> Reply {
    call(
        app,
        token,
        "POST",
        "/fhir/Appointment/$book",
        &referred(slot, pid, sr),
    )
    .await
}

/// An answer of `status` whose text names `names`.
fn answered(r: &Reply, status: u16, names: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(issue(r).1.contains(names), "{:?}", issue(r));
}

fn referred(slot: &str, pid: &str, sr: &str) -> Value {
    let mut body = booking(slot, pid, "proposed");
    body["parameter"][0]["resource"]["basedOn"] =
        json!([{"reference": format!("ServiceRequest/{sr}")}]);
    body
}

#[actix_rt::test]
async fn a_referring_clinic_books_the_reserve_before_the_public() {
    let app = spawn_app().await;
    institution(&app, "h1", "A100", "510104").await;
    institution(&app, "h2", "A100", "510108").await;
    institution(&app, "c1", "B100", "510104").await;
    institution(&app, "c2", "C220", "510121").await;
    let (h1, h2, c1, c2) = (
        app.his_of("h1"),
        app.his_of("h2"),
        app.his_of("c1"),
        app.his_of("c2"),
    );
    let doctor = app.doctor_of("c1", "user/*.cruds");
    let sched = schedule(&app, &h1, "h1").await;
    // Two places, one kept for referrals; the public books from tomorrow.
    let release = clock::instant(clock::now_millis() + DAY_MS);
    let until = clock::instant(clock::now_millis() + 2 * DAY_MS);
    let id = publish(
        &app,
        &h1,
        slot(
            &sched,
            5,
            json!([{"url": CAPACITY, "valueInteger": 2}, {"url": RESERVE, "valueInteger": 1},
                   {"url": RELEASE, "valueDateTime": release}, {"url": RESERVE_UNTIL, "valueDateTime": until}]),
        ),
    )
    .await;
    let (a, a_tok) = resident(&app, &c1, 451).await;
    let (b, _) = resident(&app, &c1, 452).await;
    let sr = referral(&app, &c1, &a, "h1", "R-1").await;
    let sr_b = referral(&app, &c1, &b, "h1", "R-2").await;

    // The public waits for the release; $find shows it nothing yet.
    let r = book(&app, &a_tok, &id, &a).await;
    refused(&r, "opens for booking at");
    let window = |extra: &str| {
        format!(
            "/fhir/Appointment/$find?start={}&end={}{extra}",
            clock::instant(clock::now_millis()),
            clock::instant(clock::now_millis() + 10 * DAY_MS)
        )
    };
    let public = app.get_as(&a_tok, &window("")).await.json();
    assert_eq!(public["total"], 0, "{public}");

    // The referring clinic's doctor finds the reserve by the referral, for its subject.
    let found = app
        .get_as(
            &doctor,
            &window("&referral-identifier=urn:huimin:test:referral|R-1&district=510104"),
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text());
    let found = found.json();
    assert_eq!(found["total"], 1, "{found}");
    let proposed = found["entry"][0]["resource"].clone();
    assert_eq!(
        proposed["basedOn"][0]["reference"],
        format!("ServiceRequest/{sr}")
    );
    assert!(
        proposed["participant"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["actor"]["reference"] == format!("Patient/{a}")),
        "{proposed}"
    );
    let in_other_district = app
        .get_as(
            &doctor,
            &window("&referral-identifier=urn:huimin:test:referral|R-1&district=510108"),
        )
        .await
        .json();
    assert_eq!(in_other_district["total"], 0);

    // What it proposes books the reserve place, before the release.
    let booked = book_proposed(&app, &doctor, &proposed).await;
    assert_eq!(booked.status, 200, "{}", booked.text());
    let booked = booked.json();
    assert_eq!(booked["status"], "booked");
    assert_eq!(
        booked["basedOn"][0]["reference"],
        format!("ServiceRequest/{sr}")
    );
    assert_eq!(slot_status(&app, &h1, &id).await, "free");
    // The hospital sees the referral booking on its Slot.
    let seen = app
        .get_as(&h1, &format!("/fhir/Appointment?slot=Slot/{id}"))
        .await
        .json();
    assert_eq!(seen["entry"].as_array().map_or(0, Vec::len), 1, "{seen}");

    // The reserve is taken: the next referral waits for the release like the public.
    let r = book_referred(&app, &c1, &id, &b, &sr_b).await;
    refused(&r, "opens for booking at");

    // Another clinic learns nothing of c1's referral: as for none at all (on a Slot whose
    // reserve has a place: one without refuses before any referral is looked at).
    let second = publish(
        &app,
        &h1,
        slot(
            &sched,
            6,
            json!([{"url": CAPACITY, "valueInteger": 2}, {"url": RESERVE, "valueInteger": 1},
                   {"url": RELEASE, "valueDateTime": release}]),
        ),
    )
    .await;
    let (b2, _) = resident(&app, &c2, 452).await;
    let r = book_referred(&app, &c2, &second, &b2, &sr_b).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let none = book_referred(&app, &c2, &second, &b2, "nope").await;
    assert_eq!(
        issue(&r).1.replace(&sr_b, "x"),
        issue(&none).1.replace("nope", "x")
    );
    let r = app
        .get_as(
            &c2,
            &window("&referral-identifier=urn:huimin:test:referral|R-2"),
        )
        .await;
    answered(&r, 422, "no referral Organization/c2 holds");

    // A hospital is not primary care; a resident does not book a reserve place; a referral
    // names its resident and its receiving institution.
    let (h2p, _) = resident(&app, &h2, 453).await;
    let sr_h2 = referral(&app, &h2, &h2p, "h1", "R-3").await;
    let r = book_referred(&app, &h2, &second, &h2p, &sr_h2).await;
    answered(&r, 403, "not a primary-care institution");
    let r = book_referred(&app, &a_tok, &second, &a, &sr).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = book_referred(&app, &c1, &second, &b, &sr).await;
    answered(&r, 422, "refers another resident");
    let sr_h2b = referral(&app, &c1, &b, "h2", "R-4").await;
    let r = book_referred(&app, &c1, &second, &b, &sr_h2b).await;
    answered(&r, 422, "another institution");

    // The referring clinic cancels its booking: the reserve place is free again for b.
    let r = cancel(&app, &c1, &id, &a, &booked["id"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled");
    let r = book_referred(&app, &c1, &id, &b, &sr_b).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[actix_rt::test]
async fn a_reserve_joins_the_public_pool_when_its_time_ends() {
    let app = spawn_app().await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let (a, a_tok) = resident(&app, &his, 461).await;
    // Kept until an instant that has passed: the public books it.
    let passed = clock::instant(clock::now_millis() - 60_000);
    let open = publish(
        &app,
        &his,
        slot(
            &sched,
            3,
            json!([{"url": RESERVE, "valueInteger": 1}, {"url": RESERVE_UNTIL, "valueDateTime": passed}]),
        ),
    )
    .await;
    // Kept without an end: for referrals until the visit.
    let kept = publish(
        &app,
        &his,
        slot(&sched, 4, json!([{"url": RESERVE, "valueInteger": 1}])),
    )
    .await;
    let r = book(&app, &a_tok, &kept, &a).await;
    refused(&r, "kept for referred residents");
    let r = book(&app, &a_tok, &open, &a).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[actix_rt::test]
async fn the_synthetic_city_publishes_a_slot_pool_one_books_from() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    // Slots from nine days ahead: the hospital's open to the public seven days before the
    // visit, the community centre's at once.
    let from = clock::local_day(clock::now_millis() + 9 * DAY_MS);
    huimin::fixtures::generate_from(20, 1, &from, dir.path()).unwrap();
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap()
    };
    let r = app.post_json("/fhir", &read("registry.json")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // org-2 is the district hospital of 510104, org-3 a community centre there.
    let (hospital, centre) = (app.his_of("org-2"), app.his_of("org-3"));
    for (his, org) in [(&hospital, "org-2"), (&centre, "org-3")] {
        let r = call(
            &app,
            his,
            "POST",
            "/fhir",
            &read(&format!("{org}/slots.json")),
        )
        .await;
        assert_eq!(r.status, 200, "{org}: {}", r.text());
    }
    let slots_of = |org: &str| {
        read(&format!("{org}/slots.json"))["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resource"]["resourceType"] == "Slot")
            .count()
    };
    let window = format!(
        "/fhir/Appointment/$find?start={}&end={}&district=510104&_count=1",
        clock::instant(clock::now_millis()),
        clock::instant(clock::now_millis() + 21 * DAY_MS)
    );
    let (pid, tok) = resident(&app, &centre, 471).await;
    let found = app.get_as(&tok, &window).await.json();
    assert_eq!(found["total"], slots_of("org-3"), "{found}");
    let proposed = found["entry"][0]["resource"].clone();
    let mut proposed_for = proposed.clone();
    proposed_for["participant"]
        .as_array_mut()
        .unwrap()
        .push(json!({"actor": {"reference": format!("Patient/{pid}")}, "status": "needs-action"}));
    let r = book_proposed(&app, &tok, &proposed_for).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The centre refers the resident up: the hospital's reserve is open to it already.
    let sr = referral(&app, &centre, &pid, "org-2", "CITY-1").await;
    let _ = sr;
    let found = app
        .get_as(
            &centre,
            &format!("{window}&referral-identifier=urn:huimin:test:referral|CITY-1"),
        )
        .await
        .json();
    assert_eq!(found["total"], slots_of("org-2"), "{found}");
}

#[actix_rt::test]
async fn a_cancelled_place_is_offered_at_once_to_one_just_refused() {
    let app = spawn_app().await;
    let his = app.his_of("h1");
    let sched = schedule(&app, &his, "h1").await;
    let one = publish(&app, &his, slot(&sched, 3, capacity(1))).await;
    let (a, a_tok) = resident(&app, &his, 481).await;
    let (b, b_tok) = resident(&app, &his, 482).await;
    let booked = book(&app, &a_tok, &one, &a).await;
    assert_eq!(booked.status, 200, "{}", booked.text());
    // Refused, and so known full for a moment: the cancellation below forgets that.
    refused(&book(&app, &b_tok, &one, &b).await, "is full");
    refused(&book(&app, &b_tok, &one, &b).await, "is full");
    let r = cancel(&app, &a_tok, &one, &a, &booked.json()["id"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = book(&app, &b_tok, &one, &b).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
