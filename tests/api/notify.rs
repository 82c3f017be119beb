//! Notifications (Subscription rest-hook): a matching create or update reaches the endpoint
//! with its headers and payload, a subscriber is told only of what it may read, a failing
//! endpoint is retried, marked `error` and recovers, booking events flow through the same
//! channel, and a Subscription is refused what its subscriber could not search for.

use huimin::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Endpoint, TestApp, id_number, patient, spawn_app};
use crate::workflow::{call, city, refer, request, task_of};

fn subscription(criteria: &str, endpoint: &str, payload: Option<&str>) -> Value {
    let mut channel = json!({"type": "rest-hook", "endpoint": endpoint,
        "header": ["Authorization: Bearer hospital-secret"]});
    if let Some(p) = payload {
        channel["payload"] = json!(p);
    }
    json!({"resourceType": "Subscription", "status": "requested",
        "reason": "referrals arriving", "criteria": criteria, "channel": channel})
}

async fn subscribe(app: &TestApp, token: &str, s: &Value) -> Value {
    let r = call(app, token, "POST", "/fhir/Subscription", s).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

#[actix_rt::test]
async fn a_referral_reaches_the_receivers_endpoint_with_its_headers_and_payload() {
    let app = spawn_app().await;
    let c = city(&app, 31).await;
    let endpoint = Endpoint::start(0);
    let s = subscribe(
        &app,
        &c.hospital,
        &subscription(
            "Task?owner=Organization/hospital",
            &endpoint.url(),
            Some("application/fhir+json"),
        ),
    )
    .await;
    assert_eq!(s["status"], "active");
    // Another institution's referral does not match.
    institution_referral(&app, &c).await;
    let task = task_of(
        &refer(
            &app,
            &c.clinic,
            &request(&c, "referral-up", "Organization/hospital"),
            86_400_000,
        )
        .await,
    );
    let got = endpoint.wait_for(1, 10).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer hospital-secret")
    );
    assert!(
        got[0]
            .header("content-type")
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let bundle: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["entry"][0]["resource"]["id"], task["id"]);
    // An update is told too.
    let moved = crate::workflow::move_task(&app, &c.hospital, &task, "received", |_| {}).await;
    assert_eq!(moved.status, 200);
    let got = endpoint.wait_for(2, 10).await;
    assert_eq!(got.len(), 2);
    let bundle: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(bundle["entry"][0]["resource"]["status"], "received");
    actix_rt::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(endpoint.received().len(), 2, "nothing else matches");
}

/// A referral of the clinic to the third institution.
async fn institution_referral(app: &TestApp, c: &crate::workflow::City) {
    task_of(
        &refer(
            app,
            &c.clinic,
            &request(c, "referral-up", "Organization/third"),
            86_400_000,
        )
        .await,
    );
}

#[actix_rt::test]
async fn a_subscriber_is_never_told_of_what_it_may_not_read() {
    let app = spawn_app().await;
    // The resident of the city denies everyone but the clinic; another resident does not.
    let c = city(&app, 32).await;
    let endpoint = Endpoint::start(0);
    subscribe(
        &app,
        &app.his_of("third"),
        &subscription("Observation?status=final", &endpoint.url(), None),
    )
    .await;
    let mut p = patient("NOTIFY-OPEN");
    p["identifier"].as_array_mut().unwrap().push(
        json!({"system": "urn:oid:2.16.156.10011.1.3", "value": id_number("510104", "19800101", 66)}),
    );
    let open = app.create_as(&c.clinic, &p).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let obs = |pid: &str, status: &str| {
        json!({"resourceType": "Observation", "status": status, "code": {"text": "血糖"},
               "subject": {"reference": format!("Patient/{pid}")}})
    };
    app.create_as(&c.clinic, &obs(&c.pid, "final")).await;
    app.create_as(&c.clinic, &obs(&open, "preliminary")).await;
    let seen = app.create_as(&c.clinic, &obs(&open, "final")).await;
    let got = endpoint.wait_for(1, 10).await;
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    let got = if got.len() == 1 {
        endpoint.received()
    } else {
        got
    };
    // Only the open resident's final Observation; no payload was asked for: no body.
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].body.is_empty());
    let trail = app
        .get_as(
            &app.token_for(Role::Admin, "system/*.cruds"),
            "/fhir/AuditEvent?_count=500",
        )
        .await
        .json();
    let told = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["subtype"][0]["code"] == "subscription-notification")
        .map(|e| e["resource"]["entity"].to_string())
        .collect::<Vec<_>>();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains(seen["id"].as_str().unwrap()), "{told:?}");
}

#[actix_rt::test]
async fn a_failing_endpoint_is_retried_marked_error_and_recovers() {
    let app = spawn_app().await;
    let c = city(&app, 33).await;
    let endpoint = Endpoint::start(0);
    endpoint
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let s = subscribe(
        &app,
        &c.hospital,
        &subscription("Task?owner=Organization/hospital", &endpoint.url(), None),
    )
    .await;
    let sid = s["id"].as_str().unwrap().to_owned();
    task_of(
        &refer(
            &app,
            &c.clinic,
            &request(&c, "referral-up", "Organization/hospital"),
            86_400_000,
        )
        .await,
    );
    // Three failures (1 s, 2 s apart): error, with the reason.
    let mut stored = Value::Null;
    for _ in 0..100 {
        actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
        stored = app
            .get_as(&c.hospital, &format!("/fhir/Subscription/{sid}"))
            .await
            .json();
        if stored["status"] == "error" {
            break;
        }
    }
    assert_eq!(stored["status"], "error", "{stored}");
    assert!(
        stored["error"].as_str().unwrap().contains("503"),
        "{stored}"
    );
    assert!(endpoint.received().is_empty());
    // The endpoint answers again: the notification arrives, the Subscription is active.
    endpoint
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let got = endpoint.wait_for(1, 15).await;
    assert_eq!(got.len(), 1);
    actix_rt::time::sleep(std::time::Duration::from_millis(300)).await;
    let stored = app
        .get_as(&c.hospital, &format!("/fhir/Subscription/{sid}"))
        .await
        .json();
    assert_eq!(stored["status"], "active", "{stored}");
    assert!(stored.get("error").is_none(), "{stored}");
}

#[actix_rt::test]
async fn bookings_flow_through_the_same_channel() {
    let app = spawn_app().await;
    let c = city(&app, 34).await;
    // A resident whose Consent does not keep the hospital out.
    let mut p = patient("NOTIFY-BOOK");
    p["identifier"].as_array_mut().unwrap().push(
        json!({"system": "urn:oid:2.16.156.10011.1.3", "value": id_number("510104", "19800101", 140)}),
    );
    let pid = app.create_as(&c.clinic, &p).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = Endpoint::start(0);
    subscribe(
        &app,
        &c.clinic,
        &subscription(
            &format!("Appointment?actor=Patient/{pid}"),
            &endpoint.url(),
            Some("application/fhir+json"),
        ),
    )
    .await;
    let h = &c.hospital;
    let schedule = app
        .create_as(h, &json!({"resourceType": "Schedule",
            "actor": [{"reference": format!("PractitionerRole/{}", c.hospital_role)}],
            "specialty": [{"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.2", "code": "03"}]}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = huimin::clock::now_millis() + 3 * 86_400_000;
    let slot = app
        .create_as(h, &json!({"resourceType": "Slot", "status": "free",
            "schedule": {"reference": format!("Schedule/{schedule}")},
            "specialty": [{"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.2", "code": "03"}]}],
            "start": huimin::clock::instant(start), "end": huimin::clock::instant(start + 900_000)}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"resourceType": "Parameters", "parameter": [{"name": "appointment-resource", "resource": {
        "resourceType": "Appointment", "status": "proposed",
        "slot": [{"reference": format!("Slot/{slot}")}],
        "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "needs-action"}]}}]});
    let r = call(&app, h, "POST", "/fhir/Appointment/$book", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = endpoint.wait_for(1, 10).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let bundle: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(bundle["entry"][0]["resource"]["status"], "booked");
}

#[actix_rt::test]
async fn a_subscription_is_refused_what_its_subscriber_could_not_search_for() {
    let app = spawn_app().await;
    let endpoint = Endpoint::start(0);
    let url = endpoint.url();
    // Scopes that do not reach the type.
    let narrow = app.token_at(
        "his-narrow",
        Role::His,
        "system/Subscription.cruds system/Patient.rs",
        Some("narrow"),
        None,
    );
    let r = call(
        &app,
        &narrow,
        "POST",
        "/fhir/Subscription",
        &subscription("Task?status=requested", &url, None),
    )
    .await;
    r.outcome(403);
    let his = app.his_of("someone");
    let cases = [
        (
            subscription("Nothing?x=1", &url, None),
            "Subscription.criteria",
        ),
        (
            subscription("Task?no-such-parameter=1", &url, None),
            "Subscription.criteria",
        ),
        (
            subscription("Task?status=requested", "http://example.org/hook", None),
            "Subscription.channel.endpoint",
        ),
        (
            subscription("Task?status=requested", &url, Some("text/plain")),
            "Subscription.channel.payload",
        ),
        (
            {
                let mut s = subscription("Task?status=requested", &url, None);
                s["channel"]["type"] = json!("websocket");
                s
            },
            "Subscription.channel.type",
        ),
    ];
    for (s, element) in cases {
        let r = call(&app, &his, "POST", "/fhir/Subscription", &s).await;
        assert_eq!(r.outcome(422)["expression"][0], element, "{}", r.text());
    }
    // One institution's Subscriptions (and the secrets in their headers) are its own.
    let mine = subscribe(
        &app,
        &his,
        &subscription("Task?status=requested", &url, None),
    )
    .await;
    let id = mine["id"].as_str().unwrap();
    app.get_as(&app.his_of("other"), &format!("/fhir/Subscription/{id}"))
        .await
        .outcome(404);
    let listed = app
        .get_as(&app.his_of("other"), "/fhir/Subscription")
        .await
        .json();
    assert!(
        listed["entry"].as_array().is_none_or(Vec::is_empty),
        "{listed}"
    );
}
