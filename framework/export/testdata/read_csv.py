# Reads a CSV file with pandas (a reader independent of the exporter) and prints it as JSON:
# {"columns": [...], "dtypes": [...], "rows": [[...], ...]}, empty cells as null.
# usage: python3 read_csv.py FILE [TEXT_COLUMN,...]   (text columns are read as strings, not guessed)
import json
import sys

import pandas as pd

text = [c for c in sys.argv[2].split(",") if c] if len(sys.argv) > 2 else []
df = pd.read_csv(sys.argv[1], dtype={c: str for c in text}, keep_default_na=False, na_values=[""])


def cell(v):
    if pd.isna(v):
        return None
    return v.item() if hasattr(v, "item") else v


print(json.dumps({
    "columns": [str(c) for c in df.columns],
    "dtypes": [str(t) for t in df.dtypes],
    "rows": [[cell(v) for v in row] for row in df.itertuples(index=False, name=None)],
}))
