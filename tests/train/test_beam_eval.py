"""BLEU under beam search: `sora eval --beam` and a recipe's `train.test_beam` decode the test split with it."""

from sora.models.seq2seq import Seq2Seq
from sora.train import evaluate_folder
from tests.deploy.export_folders import SPLIT, translator


def test_eval_decodes_with_the_beam_asked_for(tmp_path, monkeypatch):
    folder = translator(tmp_path)
    data = {"source": str(tmp_path / "pairs.csv"), "task": "seq2seq", "split": SPLIT}
    beams = []
    generate = Seq2Seq.generate

    def spy(self, src, max_new_tokens=64, **options):
        beams.append(options.get("beam", 1))
        return generate(self, src, max_new_tokens, **options)

    monkeypatch.setattr(Seq2Seq, "generate", spy)
    greedy = evaluate_folder(folder, data, split="validation", beam=1)["metrics"]
    beamed = evaluate_folder(folder, data, split="validation", beam=3)["metrics"]
    assert beams and set(beams) == {1, 3}
    assert "bleu" in greedy and "bleu" in beamed
    assert greedy["loss"] == beamed["loss"]  # teacher-forced: the beam changes the decodes only
