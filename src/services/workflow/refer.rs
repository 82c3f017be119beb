//! `POST ServiceRequest/$refer`: a referral or consultation made in one step, as one
//! transaction: the `ServiceRequest`, its `Task` (given, or made from the request: owned by
//! its first receiver, requested, with the deadline asked for), the resident's agreement to
//! the receiver's access, and, when an `appointment` is given, its booking of a referral
//! place of the receiver's slot pool by the booking rules (its `basedOn` set to the request).

use crate::clock;
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::access::Guard;
use crate::services::audit::Draft;
use crate::services::record::{self, Record};
use crate::services::scheduling::{Rules, book};
use crate::store::Store;

/// What `$refer` is given.
#[derive(Debug, Clone)]
pub struct Referral {
    pub request: Json,
    /// The Task to store (`None`: made from the request).
    pub task: Option<Json>,
    /// The deadline to accept (a FHIR dateTime) of a Task made from the request.
    pub deadline: Option<String>,
    /// An Appointment to book for the referred resident.
    pub appointment: Option<Json>,
}

/// What `$refer` stored.
#[derive(Debug, Clone)]
pub struct Referred {
    pub request: Record,
    pub task: Record,
    pub appointment: Option<Record>,
}

/// Run `$refer` as `guard`'s caller, in one audited write.
pub fn run(
    store: &Store,
    guard: Guard,
    rules: Rules,
    referral: Referral,
    draft: Draft,
) -> Result<Referred, ApiError> {
    record::write(store, draft, move |conn| {
        let (request, _) = record::create_in(
            conn,
            &guard,
            "ServiceRequest",
            referral.request.clone(),
            None,
        )?;
        let stored = Json::parse(request.content.as_bytes()).map_err(ApiError::internal)?;
        if super::kind_of(&stored).is_none() {
            return Err(super::malformed(
                "ServiceRequest.category",
                format!(
                    "$refer makes a referral or consultation: category {}|referral-up, |referral-down or |consultation",
                    super::REQUEST_CATEGORY
                ),
            ));
        }
        let tree = match &referral.task {
            Some(t) => {
                let mut t = t.clone();
                t.set_at(
                    "focus",
                    reference("ServiceRequest", &request.id),
                    usize::MAX,
                );
                t
            }
            None => task_for(&stored, &request.id, referral.deadline.as_deref())?,
        };
        let (task, _) = record::create_in(conn, &guard, "Task", tree, None)?;
        if crate::store::workflow::get(conn.conn(), &task.id)?.is_none() {
            return Err(super::malformed(
                "Task.focus",
                "the Task of a referral has the referral as its focus",
            ));
        }
        let appointment = match &referral.appointment {
            Some(a) => {
                let mut a = a.clone();
                a.set_at(
                    "basedOn",
                    Json::Array(vec![reference("ServiceRequest", &request.id)]),
                    usize::MAX,
                );
                Some(book::book_in(conn, &guard, &rules, &a)?)
            }
            None => None,
        };
        Ok(Referred {
            request,
            task,
            appointment,
        })
    })
}

fn reference(t: &str, id: &str) -> Json {
    Json::Object(vec![(
        "reference".to_owned(),
        Json::String(format!("{t}/{id}")),
    )])
}

/// The Task of a referral request `request` (stored as `id`): requested, for its subject,
/// owned by its first receiver, asked by its requester, due by `deadline`.
fn task_for(request: &Json, id: &str, deadline: Option<&str>) -> Result<Json, ApiError> {
    let mut task = vec![
        ("resourceType".to_owned(), Json::String("Task".to_owned())),
        ("status".to_owned(), Json::String("requested".to_owned())),
        ("intent".to_owned(), Json::String("order".to_owned())),
        ("focus".to_owned(), reference("ServiceRequest", id)),
    ];
    if let Some(subject) = request.get("subject") {
        task.push(("for".to_owned(), subject.clone()));
    }
    task.push((
        "authoredOn".to_owned(),
        Json::String(clock::instant(clock::now_millis())),
    ));
    if let Some(r) = request.get("requester") {
        task.push(("requester".to_owned(), r.clone()));
    }
    if let Some(Json::Array(ps)) = request.get("performer")
        && let Some(first) = ps.first()
    {
        task.push(("owner".to_owned(), first.clone()));
    }
    if let Some(end) = deadline {
        if clock::period_of(end).is_none() {
            return Err(ApiError::invalid(
                "value",
                "Parameters.parameter[deadline]",
                format!("deadline '{end}' is not a FHIR dateTime"),
            ));
        }
        task.push((
            "restriction".to_owned(),
            Json::Object(vec![(
                "period".to_owned(),
                Json::Object(vec![("end".to_owned(), Json::String(end.to_owned()))]),
            )]),
        ));
    }
    Ok(Json::Object(task))
}
