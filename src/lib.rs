//! eidn: the Enforced Isolation Deep Network (Lappas, Argyriou, Makris) for anomaly detection
//! in images, and a harness that reproduces the paper's experiments.
//!
//! Data flows one way through modules named after the pipeline stages:
//! `data` -> `model` / `reduce` -> `detect` -> `pipeline` (saved methods on pretrained
//! features) -> `metrics` -> `experiment` -> `report`.
//! Settings follow linfa's `ParamGuard` pattern everywhere: `XParams` is checked once into
//! `XValidParams`, which alone can fit.

/// `$params` wraps `$valid` (linfa's `ParamGuard`): `$valid::validate` is the one check, and
/// both serialise the same way, so a record's config can hold the checked settings.
macro_rules! checked_params {
    ($params:ident, $valid:ident, $err:ty) => {
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $params($valid);

        impl linfa::ParamGuard for $params {
            type Checked = $valid;
            type Error = $err;

            fn check_ref(&self) -> Result<&$valid, $err> {
                self.0.validate()?;
                Ok(&self.0)
            }

            fn check(self) -> Result<$valid, $err> {
                self.0.validate()?;
                Ok(self.0)
            }
        }
    };
}
pub(crate) use checked_params;

pub mod backbone;
pub mod build_info;
pub mod data;
pub mod detect;
pub mod experiment;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod reduce;
pub mod report;
