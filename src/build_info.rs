//! Which build of eidn made a record or a saved network, so that numbers from different
//! arithmetic are never mixed unseen.

use serde::{Deserialize, Serialize};

/// Bumped whenever a change makes a kernel compute other values (a new summation order, a
/// fused op, another solver): records and networks of another numerics version are rerun
/// by `reproduce`, never averaged with this one's unless asked (`report --mix-builds`).
/// Version 1: the first build that records it. Version 2: an augmented batch draws each
/// copy of a repeated pick on its own (EIDN+ networks change).
pub const NUMERICS: u32 = 2;

/// A build of eidn.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Build {
    /// The crate version.
    pub version: String,
    /// The git commit it was built from (short hash, `-dirty.<hash of the diff>` with
    /// uncommitted changes), or "unknown" outside a git checkout.
    pub commit: String,
    pub numerics: u32,
}

impl Build {
    /// This build.
    pub fn current() -> Build {
        Build {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: env!("EIDN_COMMIT").to_string(),
            numerics: NUMERICS,
        }
    }

    /// "0.1.0 9f8250b (numerics 1)".
    pub fn label(&self) -> String {
        format!(
            "{} {} (numerics {})",
            self.version, self.commit, self.numerics
        )
    }

    /// The label of a record's or network's build, "before builds were recorded" for none.
    pub fn label_of(build: Option<&Build>) -> String {
        build.map_or_else(
            || "an eidn from before builds were recorded".into(),
            Build::label,
        )
    }
}

/// The numerics version of an optional build (0: recorded before builds were).
pub fn numerics_of(build: Option<&Build>) -> u32 {
    build.map_or(0, |b| b.numerics)
}
