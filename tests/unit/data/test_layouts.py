"""One layout per file, decided the same way by every command (:class:`ReadOptions`): from the
header and every row read. A file that mixes layouts is an error naming its first odd row;
``data.format`` forces a layout."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from arena.data.chunks import ReadOptions, file_layout, iter_pairs
from arena.data.readers import read_pairs
from arena.data.schema import DataError
from tests.helpers import lmsys_test_file


@pytest.mark.parametrize("plain_row", [3, 57])
def test_a_file_mixing_layouts_names_its_first_odd_row(plain_row: int, tmp_path: Path) -> None:
    path = lmsys_test_file(tmp_path, plain_row=plain_row)
    where = f"{path}, row {plain_row}, column 'prompt'"
    for read in (
        lambda: read_pairs(path),
        lambda: list(iter_pairs(path, chunk_rows=16)),  # the odd row in a later chunk too
        lambda: ReadOptions.for_file(path),  # what every command reads a file with
    ):
        with pytest.raises(DataError, match="one layout per file") as err:
            read()
        assert where in str(err.value)
    # forced: the file is read as LMSYS, and the odd row is named as broken JSON
    with pytest.raises(DataError, match=f"row {plain_row}.*JSON"):
        read_pairs(path, format="lmsys")


def test_lmsys_and_bracketed_plain_text_are_told_apart(tmp_path: Path) -> None:
    assert file_layout(lmsys_test_file(tmp_path)) == "lmsys"
    assert ReadOptions.for_file(lmsys_test_file(tmp_path)).format == "lmsys"
    rows = [{"id": str(i), "prompt": f"[INST] question {i} [/INST]", "response_a": "a",
             "response_b": "b"} for i in range(5)]  # fmt: skip
    path = tmp_path / "wsdm_test.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert file_layout(path) == "generic"
    table, _ = read_pairs(path)
    assert table.loc[0, "prompt"] == ["[INST] question 0 [/INST]"]  # read as the text it is
    assert [c.table.loc[0, "prompt"] for c in iter_pairs(path)] == [["[INST] question 0 [/INST]"]]
    assert ReadOptions.for_file(path, format="wsdm").format == "wsdm"
