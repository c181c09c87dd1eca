"""Opens a report's results.parquet with polars and with pandas (the reference tools the
benches already use) and checks both against results.csv: same rows, same columns, typed.

    python3 benches/reference/read_results.py reports/paper
"""

import sys
from pathlib import Path

import pandas as pd
import polars as pl


def main(folder: Path) -> None:
    parquet, csv = folder / "results.parquet", folder / "results.csv"
    df = pl.read_parquet(parquet)
    pdf = pd.read_parquet(parquet)
    from_csv = pl.read_csv(csv)
    assert df.columns == from_csv.columns == list(pdf.columns), (df.columns, from_csv.columns)
    assert df.height == from_csv.height == len(pdf), (df.height, from_csv.height, len(pdf))
    for column, dtype in [("auc", pl.Float64), ("seed", pl.UInt64), ("normal_class", pl.UInt32),
                          ("dataset", pl.String), ("stage_table1", pl.Boolean)]:
        assert df.schema[column] == dtype, (column, df.schema[column])
    if df.height:
        assert (df["auc"] - from_csv["auc"]).abs().max() < 1e-12
    # The README's example: mean AUC per dataset, ratio, reducer and detector.
    summary = (
        df.group_by("dataset", "anomaly_ratio", "reducer", "detector")
        .agg(pl.col("auc").mean(), pl.col("seed").n_unique().alias("seeds"))
        .sort("dataset", "anomaly_ratio", "reducer", "detector")
    )
    print(summary)
    print(pdf.groupby(["dataset", "reducer", "detector"])["auc"].mean())
    print(f"{parquet}: {df.height} rows, {df.width} columns; polars and pandas agree with {csv.name}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "reports/quick"))
