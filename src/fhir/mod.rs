//! FHIR mechanics with no HTTP and no SQL: the JSON tree, R4B definitions, XML conversion,
//! validation, OperationOutcome and Bundle building.

pub mod bundle;
pub mod cda;
pub mod definitions;
pub mod fhirpath;
pub mod index;
pub mod json;
pub mod outcome;
pub mod pinyin;
pub mod search;
pub mod search_params;
pub mod sensitive;
pub mod shape;
pub mod text;
pub mod validate;
pub mod xml;
