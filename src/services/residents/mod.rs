//! The resident index (居民主索引): one golden resident per person, linked to every
//! institution's Patient ([`mpi`], scored by [`matching`]); merge and unmerge ([`merge`]);
//! records that find their resident late ([`relink`]); a resident's whole record
//! (`$everything`, `$summary`: [`everything`]).

pub mod everything;
pub mod matching;
pub mod merge;
pub mod mpi;
pub mod relink;
