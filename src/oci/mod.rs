//! Pure OCI distribution vocabulary: no I/O here.
//!
//! Every type in this module is validated at construction: a [`Digest`], [`RepoName`],
//! [`Tag`] or [`Reference`] that exists is well-formed, so code downstream never
//! re-validates. Parsers never panic on any input.

pub mod cache_ref;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod media;
pub mod name;
pub mod pattern;
pub mod reference;

pub use cache_ref::{CacheRef, Selector};
pub use digest::{Digest, DigestError};
pub use error::ErrorCode;
pub use name::{NameError, RepoName};
pub use reference::{Reference, ReferenceError, Tag};
