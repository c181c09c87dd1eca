# eidn tasks. Install just with `cargo install just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Run the test suite (the README's test command).
test:
    cargo test --release

# Check every dataset file against datasets/manifest.toml and count records.
verify-data dataset="all":
    cargo run --release -- data verify --dataset {{dataset}}

# Download missing datasets from their canonical sources (SHA-256 checked).
fetch-data dataset="all":
    cargo run --release -- data fetch --dataset {{dataset}}

# Dataset load times (criterion).
bench-load:
    cargo bench --bench load

# Steps/s of one EIDN training step (criterion).
bench-train-step:
    cargo bench --bench train_step

# eidn's train step vs the same step in PyTorch (needs `pip install torch`), same threads, with
# each one's GFLOP/s as a fraction of the machine's FP32 peak (measured by benches/fp32_peak.rs).
bench-vs-pytorch threads="2":
    python3 benches/reference/compare.py --threads {{threads}}

# Detector fit/score times vs scikit-learn on the same 6,000 points (needs scikit-learn), then
# a one-class SVM fit on 50,000 points with its peak memory.
bench-vs-sklearn:
    python3 benches/reference/compare_detectors.py
    cargo bench --bench ocsvm_memory

# The paper's defaults on MNIST class 0 at 1 % anomalies (50 x 100 steps of 128 triplets).
train-paper-mnist0 out="runs/mnist-c0-r0.01-s0":
    cargo run --release -- train --dataset mnist --normal-class 0 --anomaly-ratio 0.01 --seed 0 --out {{out}}

# Format and lint as CI does.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# What CI runs.
ci:
    bash .ci/run

# The paper's whole grid at its settings (Tables 1-3, Figs 5-7, unseen test), continued from
# the records committed in reports/paper/ and written back there (kill it any time; commit the
# folder after). Long on a CPU: `--jobs 1` leaves a core free, `--only fig5` picks a stage,
# `--shard K/N` splits it over machines, `--device cuda` runs it on a CUDA build's GPU.
reproduce-paper *args:
    cargo run --release -- reproduce --profile paper --resume-from reports/paper --results results/paper --out reports/paper {{args}}

# Every table cell at fewer steps (about 2 h on 2 cores from empty); writes reports/quick/. Resumable.
reproduce-quick *args:
    cargo run --release -- reproduce --profile quick {{args}}

# CI's AUC regression: the `ci` profile against tests/regression/thresholds.toml.
regress *args:
    cargo run --release -- regress --profile ci --thresholds tests/regression/thresholds.toml {{args}}

# Rewrite a profile's report from its results folder (all shards merged).
report profile="quick":
    cargo run --release -- report --results results/{{profile}} --out reports/{{profile}}

# Render every committed report that carries its records again from them (after a change to
# the report's format; tests/records_travel.rs fails until this is run and committed).
rerender-reports:
    for d in reports/*/ tests/fixtures/report_small/; do \
        if [ -f "$d/records.jsonl.gz" ]; then cargo run --release --quiet -- report --results "$d" --out "$d"; fi; \
    done

# The report fixture from scratch (~1 min; after a numerics bump makes its records another build's).
report-fixture:
    rm -rf results/report-fixture tests/fixtures/report_small
    cargo run --release -- reproduce --profile tests/fixtures/small_grid.toml --results results/report-fixture --out tests/fixtures/report_small
    cargo run --release -- report --results tests/fixtures/report_small --out tests/fixtures/report_small --compare eidn:pca/knn --compare eidn:lda/isolation_forest

# Open a report's results.parquet in Python polars and pandas and check it against results.csv
# (needs `pip install polars pandas pyarrow`).
read-results report="reports/quick":
    python3 benches/reference/read_results.py {{report}}

# `eidn score` end to end on 10,000 PNG files vs training throughput, in images/s, one run.
bench-score:
    cargo bench --bench score_throughput

# EIDN+: choose each dataset's recipe by validation on its training pools (never the test
# split; candidates in configs/eidn_plus_candidates.toml, ~20 min on 2 cores); writes
# reports/eidn_plus/ and fails when a choice differs from configs/eidn_plus.toml.
select-eidn-plus:
    cargo run --release -- select-recipe --dataset mnist
    cargo run --release -- select-recipe --dataset cifar10

# Which method on pretrained features each Deep SAD report trusts: validation on the training
# split alone (candidates in configs/method_candidates.toml, ~15 min per line on 2 cores with
# the features cached); writes reports/method_selection/ and fails when a choice differs from
# configs/method_choice.toml.
select-methods:
    cargo run --release -- select-method --dataset mnist
    cargo run --release -- select-method --dataset cifar10
    cargo run --release -- select-method --dataset cifar10 --backbone-size 224

# EIDN+ on Tables 1-2 (3 seeds), then its report in reports/plus/.
reproduce-plus *args:
    cargo run --release -- reproduce --profile plus {{args}}

# Deep SAD's protocol (issue 13): EIDN, Deep SAD and Deep SVDD on 10 (normal, known) pairs of
# MNIST and CIFAR-10 at gamma_l 0-0.2, then the report in reports/deep_sad/. Resumable.
reproduce-deep-sad *args:
    cargo run --release -- reproduce --profile deep_sad {{args}}

# After a change that moves numbers on purpose (and bumps build_info::NUMERICS): the `ci`
# profile from scratch, its floors checked, its means written as this CPU family's golden values.
refresh-golden:
    rm -rf results/ci
    cargo run --release -- regress --profile ci --results results/ci --thresholds tests/regression/thresholds.toml --refresh-golden

# The guard's teeth: a copy with the loss's targets swapped must fail `regress` (~5 min).
guard-broken-loss:
    bash tests/regression/broken-loss.sh

# Deep SAD's protocol on pretrained features (issue 30): kNN, LR, the DevNet / Deep SAD / EIDN
# heads and the kNN / Mahalanobis + LR combinations on 10 pairs of MNIST and CIFAR-10 at
# gamma_l .01 and .1, and the few-shot protocols on CIFAR-10 with EIDN and EIDN+ beside them
# (~1.5 h on 2 cores with the feature caches cold), then the report with the paired comparisons
# of each head against LR and kNN, and of EIDN / EIDN+ against kNN, in reports/few_label/.
reproduce-few-label *args:
    cargo run --release -- reproduce --profile few_label {{args}}
    cargo run --release -- report --results reports/few_label --out reports/few_label \
        --compare head_devnet:pretrained_logreg --compare head_deep_sad:pretrained_logreg \
        --compare head_eidn:pretrained_logreg --compare head_devnet:pretrained \
        --compare head_deep_sad:pretrained --compare head_eidn:pretrained \
        --compare pretrained_logreg:pretrained --compare pretrained_knn_logreg:pretrained_logreg \
        --compare pretrained_knn_logreg:pretrained --compare pretrained_mahalanobis_logreg:pretrained_knn_logreg \
        --compare eidn:pretrained --compare eidn_plus:pretrained

# The same Deep SAD protocol on CIFAR-10 with the backbone at 224 px (configs/few_label_224.toml;
# ~21 min for the feature pass on one core, once, then ~15 min), into reports/few_label_224/.
reproduce-few-label-224 *args:
    cargo run --release -- reproduce --profile few_label_224 {{args}}
    cargo run --release -- report --results reports/few_label_224 --out reports/few_label_224 \
        --compare head_devnet:pretrained_logreg --compare head_deep_sad:pretrained_logreg \
        --compare head_eidn:pretrained_logreg --compare head_devnet:pretrained \
        --compare head_deep_sad:pretrained --compare head_eidn:pretrained \
        --compare pretrained_logreg:pretrained --compare pretrained_knn_logreg:pretrained_logreg \
        --compare pretrained_knn_logreg:pretrained --compare pretrained_mahalanobis_logreg:pretrained_knn_logreg
