"""Segmentation: evaluate rules, select segments, RFM, similar customers and A/B tests.

Rules themselves are data, defined in :mod:`crmkit.models.rules`; this package builds
them (:func:`field`, :func:`contacts_where`, ...), evaluates them with SQL's
three-valued logic (:func:`evaluate`, :func:`compile_rule`) and computes segments.
"""

from crmkit.models.rules import on_contact
from crmkit.segmentation._ab import ProportionTest, assign_variant, two_proportion_test
from crmkit.segmentation._builder import (
    ActivityQuery,
    FieldRef,
    Measured,
    activity,
    contacts_where,
    custom,
    deals_where,
    field,
    has_tag,
    in_segment,
    leads_where,
    prop,
    reachable,
    tickets_where,
)
from crmkit.segmentation._compile import (
    compile_activity_filter,
    compile_keyed,
    compile_rule,
    compile_selector,
    compile_sum,
)
from crmkit.segmentation._evaluate import evaluate
from crmkit.segmentation._rfm import RfmGroup, RfmScore, rfm_group, rfm_scores
from crmkit.segmentation._segments import (
    Overlap,
    check_segments,
    members,
    overlap,
    segment_size,
    select,
)
from crmkit.segmentation._semantics import Context
from crmkit.segmentation._similar import SimilarContact, Similarity, similar_contacts
from crmkit.segmentation._text import MAX_RULE_TEXT, format_condition, format_rule, parse_rule

__all__ = [
    "MAX_RULE_TEXT",
    "ActivityQuery",
    "Context",
    "FieldRef",
    "Measured",
    "Overlap",
    "ProportionTest",
    "RfmGroup",
    "RfmScore",
    "SimilarContact",
    "Similarity",
    "activity",
    "assign_variant",
    "check_segments",
    "compile_activity_filter",
    "compile_keyed",
    "compile_rule",
    "compile_selector",
    "compile_sum",
    "contacts_where",
    "custom",
    "deals_where",
    "evaluate",
    "field",
    "format_condition",
    "format_rule",
    "has_tag",
    "in_segment",
    "leads_where",
    "members",
    "on_contact",
    "overlap",
    "parse_rule",
    "prop",
    "reachable",
    "rfm_group",
    "rfm_scores",
    "segment_size",
    "select",
    "similar_contacts",
    "tickets_where",
    "two_proportion_test",
]
