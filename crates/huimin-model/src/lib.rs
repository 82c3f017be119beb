//! Typed FHIR R4B validation for Huimin.
//!
//! This crate owns every use of the generated fhir-sdk R4B models and exposes them only through
//! non-generic functions, so the application crate never instantiates the generated serde code
//! and rebuilds in seconds instead of minutes.
//!
//! The fhir-sdk models are lossy: unknown elements are skipped and some invalid choice values
//! vanish while the parse succeeds. [`kept`] therefore returns what the typed model kept
//! (parsed and serialised again), for the caller to compare with the input, so that anything
//! the model did not understand is reported instead of silently dropped.

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

/// The resource given as JSON text as the R4B model of `resource_type` keeps it: parsed into
/// the typed model and serialised again. An error names the element the model refused; what
/// the model silently dropped is missing from the result, so the caller compares it with the
/// input (the application compares it with its own parse of the input).
pub fn kept(resource_type: &str, json: &[u8]) -> Result<Value, Invalid> {
    roundtrip(resource_type, json).unwrap_or_else(|| {
        Err(Invalid {
            path: "resourceType".to_owned(),
            message: format!("'{resource_type}' is not a FHIR R4B resource type"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept_of(json: &str) -> Result<Value, Invalid> {
        let v: Value = serde_json::from_str(json).unwrap();
        kept(v["resourceType"].as_str().unwrap(), json.as_bytes())
    }

    #[test]
    fn keeps_a_valid_patient() {
        let json = r#"{"resourceType":"Patient","id":"a","gender":"female","birthDate":"1980-02-03","name":[{"family":"张","given":["伟"]}],"active":true}"#;
        let input: Value = serde_json::from_str(json).unwrap();
        assert_eq!(kept_of(json).unwrap(), input);
    }

    #[test]
    fn drops_unknown_elements_silently() {
        let k = kept_of(r#"{"resourceType":"Patient","foo":1,"active":true}"#).unwrap();
        assert!(k.get("foo").is_none());
        assert_eq!(k["active"], true);
        let k = kept_of(
            r#"{"resourceType":"Observation","status":"final","code":{"text":"t"},"valueFoo":{"value":1}}"#,
        )
        .unwrap();
        assert!(k.get("valueFoo").is_none());
    }

    #[test]
    fn names_wrong_types_and_codes() {
        let e = kept_of(r#"{"resourceType":"Patient","active":"yes"}"#).unwrap_err();
        assert_eq!(e.path, "Patient.active", "{e}");
        let e = kept_of(r#"{"resourceType":"Patient","name":[{"given":[1]}]}"#).unwrap_err();
        assert!(e.path.starts_with("Patient.name[0].given"), "{e}");
        let e = kept_of(r#"{"resourceType":"Patient","gender":"robot"}"#).unwrap_err();
        assert_eq!(e.path, "Patient.gender", "{e}");
    }

    #[test]
    fn keeps_decimals_and_choice_values() {
        let k = kept_of(
            r#"{"resourceType":"Observation","status":"final","code":{"text":"t"},"valueQuantity":{"value":36.60,"unit":"C"}}"#,
        )
        .unwrap();
        assert_eq!(k["valueQuantity"]["value"].as_f64(), Some(36.6));
    }

    #[test]
    fn unknown_type() {
        assert!(!is_resource_type("Foo"));
        assert!(is_resource_type("Patient"));
        assert!(kept("Foo", b"{}").is_err());
    }
}
