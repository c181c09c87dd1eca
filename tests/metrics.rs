//! ROC AUC and AP against scikit-learn on fixed vectors (tests/reference/metrics_reference.py
//! produced tests/fixtures/metrics_sklearn.json).

use eidn::metrics::{average_precision, roc_auc};

#[test]
fn matches_scikit_learn() {
    let text = include_str!("fixtures/metrics_sklearn.json");
    let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let scores: Vec<f64> = serde_json::from_value(case["scores"].clone()).unwrap();
        let labels: Vec<bool> = serde_json::from_value(case["labels"].clone()).unwrap();
        let want_auc = case["roc_auc"].as_f64().unwrap();
        let want_ap = case["average_precision"].as_f64().unwrap();
        let auc = roc_auc(&scores, &labels).unwrap();
        let ap = average_precision(&scores, &labels).unwrap();
        assert!(
            (auc - want_auc).abs() < 1e-12,
            "{name}: auc {auc} vs sklearn {want_auc}"
        );
        assert!(
            (ap - want_ap).abs() < 1e-12,
            "{name}: ap {ap} vs sklearn {want_ap}"
        );
    }
}
