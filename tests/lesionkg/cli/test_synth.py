"""``lesionkg synth``, through click's CliRunner."""

import csv
import json

from click.testing import CliRunner

from lesionkg.cli import main


def test_synth_deeplesion_writes_a_labelled_cohort(tmp_path):
    out = tmp_path / "cohort"
    args = ["synth", "deeplesion", str(out), "--patients", "2", "--seed", "7", "--no-images"]
    result = CliRunner().invoke(main, [*args, "--first-patient", "50", "--ssbr-volumes", "1"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "DL_info_synthetic.json").read_text())
    assert meta["synthetic"] is True and meta["patients"] == 2 and meta["ssbr_volumes"] == 1
    with open(out / "DL_info_synthetic.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == meta["lesions"]
    assert {int(r["Patient_index"]) for r in rows} == {50, 51}
    assert result.stdout.splitlines()[-1] == (
        f"SYNTHETIC cohort: 2 patients, {meta['studies']} studies, {meta['lesions']} lesions, "
        f"0 images, 1 SSBR volumes -> {out / 'DL_info_synthetic.csv'}"
    )
    assert not (out / "Images_png").exists()
