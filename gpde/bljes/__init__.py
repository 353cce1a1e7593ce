"""BLJES: Bayesian optimization for bilevel problems whose levels are expensive black boxes
(bilevel joint entropy search, REFERENCES.md §4), its baselines and the study runner."""

from ._benchmark import AbstractBilevelBenchmark as AbstractBilevelBenchmark
