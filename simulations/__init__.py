"""SimPy models of the guide's patterns, driving the very objects of :mod:`patterns`.

* :mod:`simulations.kit` -- what every model shares: a SimPy clock, seeded random
  streams, a recorder of events, workloads, faults, one plot style, widget helpers;
* one module per topic, e.g. :mod:`simulations.retry` for guide section 4.1.

Each topic module offers ``run_...(...)`` functions (parameters and a seed in, a plain
result out, deterministic for a given seed), ``plot_...(result, ax=...)`` functions, and
where a notebook explores the model, a function that builds its widget.
"""
