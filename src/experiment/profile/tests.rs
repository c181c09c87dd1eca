//! Profiles parsed, checked and expanded.

use std::path::Path;

use super::*;
use crate::data::DatasetName;
use crate::model::{Arch, Augment};
use crate::reduce::ReducerKind;

#[test]
fn builtin_profiles_parse_and_list_their_cells() {
    for (name, _) in BUILTIN {
        let p = Profile::resolve(name).unwrap();
        assert_eq!(p.name, name);
        assert!(!p.cells(&[]).is_empty());
    }
    let quick = Profile::resolve("quick").unwrap();
    assert!(quick.seeds.len() >= 3);
    let paper = Profile::resolve("paper").unwrap();
    assert!(paper.seeds.len() >= 3);
    assert_eq!(paper.train.steps(), 5000);
    assert_eq!(paper.train.batch_size, 128);
}

/// The Deep SAD protocol's cells: per gamma_l > 0 and pair one EIDN and one Deep SAD
/// network; one Deep SVDD network per normal class, shared by every gamma_l; nothing
/// supervised at gamma_l = 0.
#[test]
fn deep_sad_stage_cells() {
    let text = r#"
        name = "d"
        description = "x"
        seeds = [0, 1]
        [train]
        epochs = 1
        steps_per_epoch = 10
        batch_size = 8
        [deep_sad]
        ae_epochs = 1
        epochs = 2
        [[stage]]
        id = "deep_sad"
        dataset = "mnist"
        pairs = [[0, 1], [3, 2]]
        gamma_l = [0.0, 0.05]
        pollution = 0.1
        reducers = ["eidn", "deep_sad", "deep_svdd"]
        detectors = ["origin_distance", "gmm"]
    "#;
    let p = Profile::parse(text, Path::new("d.toml")).unwrap();
    let cells = p.cells(&[]);
    let count = |f: fn(&Cell) -> bool| cells.iter().filter(|c| f(c)).count();
    // 2 pairs x 2 seeds at gamma_l 0.05: EIDN and Deep SAD; Deep SVDD: 2 classes x 2 seeds.
    assert_eq!(count(|c| c.deep.is_none()), 4);
    assert_eq!(count(|c| c.deep.as_ref().is_some_and(|d| d.supervised)), 4);
    assert_eq!(count(|c| c.deep.as_ref().is_some_and(|d| !d.supervised)), 4);
    assert_eq!(cells.len(), 12);
    for c in &cells {
        let p = &c.protocol;
        assert!(p.deep_sad && p.pollution == 0.1, "{}", c.id());
        assert_eq!(c.methods.len(), 2);
        match &c.deep {
            Some(d) if !d.supervised => {
                assert_eq!(p.anomaly_ratio, 0.0);
                assert!(
                    c.id().contains("-gl0-") && c.id().contains("-dsvdd-"),
                    "{}",
                    c.id()
                );
            }
            _ => {
                assert!((p.gamma_l() - 0.05).abs() < 1e-12);
                let known = if p.normal_class == 0 { 1 } else { 2 };
                assert_eq!(p.train_anomaly_classes, Some(vec![known]));
                assert!(c.id().contains("-gl0.05-"), "{}", c.id());
            }
        }
    }
    // A checked profile checks again (runs save it and reports re-read it).
    let again = toml::to_string(&*p).unwrap();
    assert!(
        Profile::parse(&again, Path::new("again.toml")).is_ok(),
        "{again}"
    );
    for bad in [
        text.replace("gamma_l = [0.0, 0.05]", "ratios = [0.05]"),
        text.replace("gamma_l = [0.0, 0.05]", "gamma_l = [1.0]"),
        text.replace("[3, 2]", "[2, 2]"),
        text.replace("ae_epochs = 1", "ae_epochs = 1\nlr = -1.0"),
        text.replace(r#"id = "deep_sad""#, "id = \"table1\"\nratios = [0.1]"),
    ] {
        assert!(
            Profile::parse(&bad, Path::new("bad.toml")).is_err(),
            "{bad}"
        );
    }
}

const TINY: &str = r#"
    name = "tiny"
    description = "test"
    seeds = [0, 1]
    [train]
    epochs = 1
    steps_per_epoch = 5
    batch_size = 4
    [[stage]]
    id = "fig5"
    dataset = "mnist"
    classes = [0, 1]
    ratios = [0.05, 0.01]
    [[stage]]
    id = "fig7"
    dataset = "mnist"
    classes = [0]
    ratios = [0.05]
    seeds = [0]
    reducers = ["eidn", "pca"]
    detectors = ["lof", "origin_distance"]
"#;

#[test]
fn shared_cells_are_merged() {
    let p = Profile::parse(TINY, Path::new("tiny.toml")).unwrap();
    let cells = p.cells(&[]);
    assert_eq!(cells.len(), 8);
    let c0 = cells
        .iter()
        .find(|c| c.id() == "mnist-c0-r0.05-s0-e1x5-b4-m0.2-lr0.001-l2")
        .unwrap();
    assert_eq!(c0.methods.len(), 4);
    assert_eq!(c0.stages, vec![StageId::Fig5, StageId::Fig7]);
    assert_eq!(p.cells(&[StageId::Fig7]).len(), 1);
}

#[test]
fn bad_profiles_name_the_problem() {
    let err = |text: &str| {
        Profile::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string()
    };
    assert!(err(&TINY.replace("classes = [0, 1]", "classes = [0, 12]")).contains("class 12"));
    assert!(err(&TINY.replace("ratios = [0.05, 0.01]", "ratios = []")).contains("ratios"));
    assert!(err(&TINY.replace("\"lof\"", "\"nearest\"")).contains("x.toml"));
    assert!(err(&TINY.replace("batch_size = 4", "batch_size = 0")).contains("batch_size"));
}

/// Issue 15: augmentation is part of a cell's id and training record when on, and
/// absent when off (ids and record hashes of existing results do not change).
#[test]
fn augmentation_in_ids_only_when_on() {
    let text = r#"
        name = "a"
        description = "x"
        seeds = [0]
        [train]
        epochs = 1
        steps_per_epoch = 10
        batch_size = 8
        [[stage]]
        id = "table2"
        dataset = "cifar10"
        classes = [3]
        ratios = [0.1]
        [[stage]]
        id = "fig5"
        dataset = "cifar10"
        classes = [3]
        ratios = [0.1]
        train = { augment = "crop-flip:4" }
    "#;
    let p = Profile::parse(text, Path::new("a.toml")).unwrap();
    let ids: Vec<String> = p.cells(&[]).iter().map(Cell::id).collect();
    assert_eq!(
        ids,
        [
            "cifar10-c3-r0.1-s0-e1x10-b8-m0.2-lr0.001-l2",
            "cifar10-c3-r0.1-s0-e1x10-b8-m0.2-lr0.001-l2-augcrop-flip4"
        ]
    );
    let plain = serde_json::to_value(&p.cells(&[])[0].train).unwrap();
    assert!(plain.get("augment").is_none(), "{plain}");
    let on = &p.cells(&[])[1];
    assert_eq!(on.train.params(0).augment, Augment::CropFlip { pad: 4 });
    assert!(Profile::parse(
        &text.replace("crop-flip:4", "crop-flip:99"),
        Path::new("a.toml")
    )
    .is_err());
}

/// Issue 15: `eidn_plus` trains its own cells, at its dataset's recipe, with only its
/// methods; the paper-recipe cells keep their ids and methods.
#[test]
fn eidn_plus_gets_cells_of_its_own() {
    let text = TINY.replace(
        "reducers = [\"eidn\", \"pca\"]",
        "reducers = [\"eidn\", \"eidn_plus\", \"pca\"]",
    );
    let p = Profile::parse(&text, Path::new("tiny.toml")).unwrap();
    let cells = p.cells(&[StageId::Fig7]);
    assert_eq!(cells.len(), 2);
    assert_eq!(cells[0].id(), "mnist-c0-r0.05-s0-e1x5-b4-m0.2-lr0.001-l2");
    assert!(cells[0]
        .methods
        .iter()
        .all(|(r, _)| *r != ReducerKind::EidnPlus));
    let plus = &cells[1];
    assert!(plus
        .methods
        .iter()
        .all(|(r, _)| *r == ReducerKind::EidnPlus));
    assert_eq!(plus.methods.len(), 2);
    let recipe = super::super::recipe::eidn_plus(DatasetName::Mnist).apply(&p.train);
    assert_eq!(plus.train, recipe);
    assert!(
        !plus.train.augment.is_none() && plus.id().contains("-aug"),
        "{}",
        plus.id()
    );
    assert!(plus.needs_encoder());
    let arch = Arch {
        same_padding: true,
        width: 2,
        blocks: 3,
    };
    let t = TrainSpec { arch, ..recipe };
    assert!(Cell {
        train: t,
        ..plus.clone()
    }
    .id()
    .ends_with("-same-x2-blk3"));
}

/// Issue 10 item 1: stages that differ only in a training setting are different cells,
/// each with its own settings, and a stage's `train` table inherits what it leaves out.
#[test]
fn every_training_setting_is_part_of_the_cell() {
    let base = r#"
        name = "t"
        description = "x"
        seeds = [0]
        [train]
        epochs = 2
        steps_per_epoch = 5
        batch_size = 4
        margin = 0.5
        lr = 0.002
        embed_dim = 3
        [[stage]]
        id = "table1"
        dataset = "mnist"
        classes = [0]
        ratios = [0.05]
    "#;
    let p = Profile::parse(base, Path::new("t.toml")).unwrap();
    let plain = p.cells(&[]);
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].train, p.train);
    for (over, check) in [
        (
            "lr = 0.01",
            Box::new(|t: &TrainSpec| t.lr == 0.01) as Box<dyn Fn(&TrainSpec) -> bool>,
        ),
        ("margin = 1.0", Box::new(|t: &TrainSpec| t.margin == 1.0)),
        (
            "embed_dim = 16",
            Box::new(|t: &TrainSpec| t.embed_dim == 16),
        ),
        (
            "epochs = 1\nsteps_per_epoch = 10",
            Box::new(|t: &TrainSpec| t.epochs == 1),
        ),
    ] {
        let text = format!(
            "{base}\n[[stage]]\nid = \"fig5\"\ndataset = \"mnist\"\nclasses = [0]\nratios = [0.05]\n[stage.train]\n{over}\n"
        );
        let q = Profile::parse(&text, Path::new("t.toml")).unwrap();
        let cells = q.cells(&[]);
        assert_eq!(cells.len(), 2, "{over}: one cell per setting");
        assert_ne!(cells[0].id(), cells[1].id(), "{over}");
        let other = &cells[1];
        assert!(check(&other.train), "{over}: {:?}", other.train);
        // Inherited, not reset to the defaults.
        assert_eq!(other.train.batch_size, 4, "{over}");
        if !over.starts_with("margin") {
            assert_eq!(other.train.margin, 0.5, "{over}");
        }
        if !over.starts_with("embed_dim") {
            assert_eq!(other.train.embed_dim, 3, "{over}");
        }
    }
}

#[test]
fn shards_split_the_cells() {
    let s = Shard::parse("2/3").unwrap();
    assert_eq!((s.index, s.count, s.tag()), (2, 3, "2-of-3".to_string()));
    assert!(Shard::parse("0/3").is_err());
    assert!(Shard::parse("4/3").is_err());
    assert!(Shard::parse("x").is_err());
}

/// `backbone_size` sets the pretrained features of every cell (and so their records'
/// config); without it each dataset keeps its default; a size the backbone cannot take is
/// refused when the profile is read.
#[test]
fn backbone_size_reaches_every_cell_and_is_checked() {
    let text = |extra: &str| {
        format!(
            "name = \"b\"\ndescription = \"x\"\nseeds = [0]\n{extra}\n[train]\nepochs = 1\n\
             steps_per_epoch = 10\nbatch_size = 8\n[[stage]]\nid = \"table2\"\n\
             dataset = \"cifar10\"\nratios = [0.1]\nclasses = [0]\n\
             reducers = [\"pretrained\"]\ndetectors = [\"knn\"]\n"
        )
    };
    let default = Profile::parse(&text(""), Path::new("b.toml")).unwrap();
    let big = Profile::parse(&text("backbone_size = 224"), Path::new("b.toml")).unwrap();
    assert_eq!(default.cells(&[])[0].features.size, 128);
    assert_eq!(big.cells(&[])[0].features.size, 224);
    assert_eq!(big.features(DatasetName::Mnist).size, 224);
    let (r, d) = (ReducerKind::Pretrained, crate::detect::DetectorKind::Knn);
    let hash = |p: &ValidProfile| {
        let cell = &p.cells(&[])[0];
        let (reducer, detector) = crate::experiment::select::method_settings(cell, r, d).unwrap();
        crate::experiment::select::record_config(cell, &reducer, &detector, None).1
    };
    assert_ne!(
        hash(&default),
        hash(&big),
        "the size is part of the record's config"
    );
    for bad in [100, 0, 1024] {
        let err = Profile::parse(
            &text(&format!("backbone_size = {bad}")),
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("b.toml") && err.contains("backbone_size"),
            "{err}"
        );
    }
}
