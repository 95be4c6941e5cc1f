"""Experiments: baselines, linear probes, the sweep runner and the interpretability analyses.

* :mod:`.common` — rows, labels and the speaker-independent fold plan of ``physioser eval``, scored
  by the same metric code (:mod:`physioser.model.metrics`), results written as JSON;
* :mod:`.handcrafted` — MFCC + F0 + energy statistics → StandardScaler → logistic regression;
* :mod:`.probe` — linear probes on cached backbone features (per-layer utterance means);
* :mod:`.sweep` — (corpus × config × fold) runs of ``physioser eval`` in parallel processes;
* :mod:`.analysis` — quartet component importance, learned layer weights, CPA alignment;
* :mod:`.tables` — ``eval/results/EXPERIMENTS.md`` from the result files.
"""
