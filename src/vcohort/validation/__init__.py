"""Evidence that vcohort's numbers mean something (issue 5): the integrator against
independent solvers, published models through the same engine, the SBML export in
libroadrunner, the review's mechanisms as behaviours, Sobol indices on a known function and the
drivers of the triple combination's benefit.  Each check returns a `Check`; `run` stores and
renders them."""

from vcohort.validation.check import Check

__all__ = ["Check"]
