//! Typed FHIR R4B validation for Huimin.
//!
//! This crate owns every use of the generated fhir-sdk R4B models and exposes them only through
//! non-generic functions, so the application crate never instantiates the generated serde code
//! and rebuilds in seconds instead of minutes.
//!
//! The fhir-sdk models are lossy: unknown elements are skipped and some invalid choice values
//! vanish while the parse succeeds. [`check`] therefore parses the resource into its typed
//! model, serialises it again and compares the result with the input, so that anything the model
//! did not understand is reported instead of silently dropped.

use serde_json::Value;

/// Why a resource was refused: a FHIRPath-like location and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Location of the offending element, e.g. `Patient.name[0].given`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

macro_rules! resource_types {
    ($($name:ident),* $(,)?) => {
        /// Every concrete resource type of FHIR R4B (4.3.0), in alphabetical order.
        pub const RESOURCE_TYPES: &[&str] = &[$(stringify!($name)),*];

        fn roundtrip(resource_type: &str, json: &[u8]) -> Option<Result<Value, Invalid>> {
            use fhir_sdk::r4b::resources as r;
            Some(match resource_type {
                $(stringify!($name) => typed_roundtrip::<r::$name>(resource_type, json),)*
                _ => return None,
            })
        }
    };
}

resource_types!(
    Account,
    ActivityDefinition,
    AdministrableProductDefinition,
    AdverseEvent,
    AllergyIntolerance,
    Appointment,
    AppointmentResponse,
    AuditEvent,
    Basic,
    Binary,
    BiologicallyDerivedProduct,
    BodyStructure,
    Bundle,
    CapabilityStatement,
    CarePlan,
    CareTeam,
    CatalogEntry,
    ChargeItem,
    ChargeItemDefinition,
    Citation,
    Claim,
    ClaimResponse,
    ClinicalImpression,
    ClinicalUseDefinition,
    CodeSystem,
    Communication,
    CommunicationRequest,
    CompartmentDefinition,
    Composition,
    ConceptMap,
    Condition,
    Consent,
    Contract,
    Coverage,
    CoverageEligibilityRequest,
    CoverageEligibilityResponse,
    DetectedIssue,
    Device,
    DeviceDefinition,
    DeviceMetric,
    DeviceRequest,
    DeviceUseStatement,
    DiagnosticReport,
    DocumentManifest,
    DocumentReference,
    Encounter,
    Endpoint,
    EnrollmentRequest,
    EnrollmentResponse,
    EpisodeOfCare,
    EventDefinition,
    Evidence,
    EvidenceReport,
    EvidenceVariable,
    ExampleScenario,
    ExplanationOfBenefit,
    FamilyMemberHistory,
    Flag,
    Goal,
    GraphDefinition,
    Group,
    GuidanceResponse,
    HealthcareService,
    ImagingStudy,
    Immunization,
    ImmunizationEvaluation,
    ImmunizationRecommendation,
    ImplementationGuide,
    Ingredient,
    InsurancePlan,
    Invoice,
    Library,
    Linkage,
    List,
    Location,
    ManufacturedItemDefinition,
    Measure,
    MeasureReport,
    Media,
    Medication,
    MedicationAdministration,
    MedicationDispense,
    MedicationKnowledge,
    MedicationRequest,
    MedicationStatement,
    MedicinalProductDefinition,
    MessageDefinition,
    MessageHeader,
    MolecularSequence,
    NamingSystem,
    NutritionOrder,
    NutritionProduct,
    Observation,
    ObservationDefinition,
    OperationDefinition,
    OperationOutcome,
    Organization,
    OrganizationAffiliation,
    PackagedProductDefinition,
    Parameters,
    Patient,
    PaymentNotice,
    PaymentReconciliation,
    Person,
    PlanDefinition,
    Practitioner,
    PractitionerRole,
    Procedure,
    Provenance,
    Questionnaire,
    QuestionnaireResponse,
    RegulatedAuthorization,
    RelatedPerson,
    RequestGroup,
    ResearchDefinition,
    ResearchElementDefinition,
    ResearchStudy,
    ResearchSubject,
    RiskAssessment,
    Schedule,
    SearchParameter,
    ServiceRequest,
    Slot,
    Specimen,
    SpecimenDefinition,
    StructureDefinition,
    StructureMap,
    Subscription,
    SubscriptionStatus,
    SubscriptionTopic,
    Substance,
    SubstanceDefinition,
    SupplyDelivery,
    SupplyRequest,
    Task,
    TerminologyCapabilities,
    TestReport,
    TestScript,
    ValueSet,
    VerificationResult,
    VisionPrescription
);

/// Whether `name` is a concrete R4B resource type.
pub fn is_resource_type(name: &str) -> bool {
    RESOURCE_TYPES.binary_search(&name).is_ok()
}

fn typed_roundtrip<T>(resource_type: &str, json: &[u8]) -> Result<Value, Invalid>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let mut de = serde_json::Deserializer::from_slice(json);
    let typed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner().to_string();
        Invalid {
            path: join_path(resource_type, &e.path().to_string()),
            message: clean_message(&inner),
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| Invalid {
        path: resource_type.to_owned(),
        message: format!("resource cannot be represented: {e}"),
    })
}

fn join_path(root: &str, rest: &str) -> String {
    if rest.is_empty() || rest == "." {
        root.to_owned()
    } else if rest.starts_with('[') {
        format!("{root}{rest}")
    } else {
        format!("{root}.{rest}")
    }
}

/// serde messages end with " at line L column C"; the location is given by the path instead.
fn clean_message(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Validate one resource given as JSON text against the R4B model of `resource_type`.
///
/// `input` must be the same document parsed as a [`Value`]; it is compared with what the typed
/// model kept, so that unknown or dropped elements are reported.
pub fn check(resource_type: &str, json: &[u8], input: &Value) -> Result<(), Invalid> {
    let Some(result) = roundtrip(resource_type, json) else {
        return Err(Invalid {
            path: "resourceType".to_owned(),
            message: format!("'{resource_type}' is not a FHIR R4B resource type"),
        });
    };
    let kept = result?;
    compare(resource_type, input, &kept, true)
}

/// Report the first element present in `input` that the typed model did not keep.
fn compare(path: &str, input: &Value, kept: &Value, root: bool) -> Result<(), Invalid> {
    match (input, kept) {
        (Value::Object(a), Value::Object(b)) => {
            if a.is_empty() {
                return Err(invalid(path, "an object must not be empty"));
            }
            for (k, v) in a {
                if root && k == "resourceType" {
                    continue;
                }
                let child = format!("{path}.{k}");
                match v {
                    Value::Array(a) if a.is_empty() => {
                        return Err(invalid(&child, "an array must not be empty"));
                    }
                    Value::Object(o) if o.is_empty() => {
                        return Err(invalid(&child, "an object must not be empty"));
                    }
                    _ => {}
                }
                match b.get(k) {
                    Some(w) => compare(&child, v, w, false)?,
                    None if v.is_null() => {
                        return Err(invalid(&child, "null is not a valid value here"));
                    }
                    None => {
                        return Err(invalid(
                            &child,
                            &format!("unknown element '{k}' or invalid content"),
                        ));
                    }
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.is_empty() {
                return Err(invalid(path, "an array must not be empty"));
            }
            if a.len() != b.len() {
                return Err(invalid(path, "some items of this array are not valid"));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                compare(&format!("{path}[{i}]"), v, w, false)?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) => {
            if a.as_f64() == b.as_f64() {
                Ok(())
            } else {
                Err(invalid(path, "number out of range for this element"))
            }
        }
        (Value::String(a), Value::String(_)) => {
            if a.is_empty() {
                Err(invalid(path, "a string must not be empty"))
            } else {
                Ok(())
            }
        }
        (Value::Bool(_), Value::Bool(_)) | (Value::Null, Value::Null) => Ok(()),
        (Value::Object(_), _) | (Value::Array(_), _) => {
            Err(invalid(path, "unexpected structure for this element"))
        }
        _ => Err(invalid(path, "wrong type for this element")),
    }
}

fn invalid(path: &str, message: &str) -> Invalid {
    Invalid {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(json: &str) -> Result<(), Invalid> {
        let v: Value = serde_json::from_str(json).unwrap();
        let t = v["resourceType"].as_str().unwrap().to_owned();
        check(&t, json.as_bytes(), &v)
    }

    #[test]
    fn accepts_valid_patient() {
        run(
            r#"{"resourceType":"Patient","id":"a","gender":"female","birthDate":"1980-02-03",
            "name":[{"family":"张","given":["伟"]}],"active":true}"#,
        )
        .unwrap();
    }

    #[test]
    fn names_unknown_element() {
        let e = run(r#"{"resourceType":"Patient","foo":1}"#).unwrap_err();
        assert_eq!(e.path, "Patient.foo");
    }

    #[test]
    fn names_wrong_type() {
        let e = run(r#"{"resourceType":"Patient","active":"yes"}"#).unwrap_err();
        assert_eq!(e.path, "Patient.active", "{e}");
    }

    #[test]
    fn names_nested_wrong_type() {
        let e = run(r#"{"resourceType":"Patient","name":[{"given":[1]}]}"#).unwrap_err();
        assert!(e.path.starts_with("Patient.name[0].given"), "{e}");
    }

    #[test]
    fn rejects_bad_code() {
        let e = run(r#"{"resourceType":"Patient","gender":"robot"}"#).unwrap_err();
        assert_eq!(e.path, "Patient.gender", "{e}");
    }

    #[test]
    fn keeps_decimals_and_choice_values() {
        run(
            r#"{"resourceType":"Observation","status":"final","code":{"text":"t"},
            "valueQuantity":{"value":36.60,"unit":"C"}}"#,
        )
        .unwrap();
        let e = run(
            r#"{"resourceType":"Observation","status":"final","code":{"text":"t"},
            "valueFoo":{"value":1}}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "Observation.valueFoo");
    }

    #[test]
    fn unknown_type() {
        assert!(!is_resource_type("Foo"));
        assert!(is_resource_type("Patient"));
        let v = serde_json::json!({"resourceType":"Foo"});
        assert!(check("Foo", b"{}", &v).is_err());
    }
}
