//! eidn: the Enforced Isolation Deep Network (Lappas, Argyriou, Makris) for anomaly detection
//! in images, and a harness that reproduces the paper's experiments.
//!
//! Data flows one way through modules named after the pipeline stages:
//! `data` -> `model` / `reduce` -> `detect` -> `metrics` -> `experiment` -> `report`.
//! `report` (tables and charts) is next.

pub mod data;
pub mod detect;
pub mod experiment;
pub mod metrics;
pub mod model;
pub mod reduce;
pub mod report;
