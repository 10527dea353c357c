"""The evaluation wing: sample-quality evaluators the runtime resolves by name.

    fid, sfid, prec_recall, inception_score     :mod:`collage.evals.fid` (Inception features;
                                                 the weights are a file the user converts)
    digits_fid, digits_kid, digits_prec_recall  :mod:`collage.evals.digits` (the shipped digit
                                                 classifier's features, on the embedded digits)

The runtime (:mod:`collage.train.evaluators`) imports this package by name before it looks up a
type, so every type here is there in every process; importing it registers them. Its own
``loss`` and ``samples`` stay in ``collage/train/``. The pure maths (Fréchet distance, KID,
precision/recall, IS) is in :mod:`collage.metrics`; the feature networks in :mod:`collage.nn`.
"""

from collage.evals import digits, fid
from collage.train import evaluators

for _kind, _cls in {**fid.KINDS, **digits.KINDS}.items():
  evaluators.register(_kind, _cls)
