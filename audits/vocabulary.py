"""Words of the domain that code and tests share (DESIGN.md, CONTRACT.md)."""

# The privacy-policy clause categories: the survey's columns.
CLAUSE_CATEGORIES = (
    "collection", "purpose", "sharing", "cookies", "retention",
    "security", "rights", "contact", "children", "changes",
)  # fmt: skip

# Rule ids every bundled configuration has; they keep their meaning (CONTRACT.md).
CONTRACT_RULE_IDS = (
    "privacy.policy_present",
    *(f"privacy.clause.{c}" for c in CLAUSE_CATEGORIES),
    "complaint.channel_present",
    "business.licence_displayed",
    "business.icp_displayed",
    "badge.valid",
)

# Badge verdicts (CONTRACT.md, `badge.verdict`).
BADGE_VERDICTS = (
    "valid", "absent", "no_certificate", "expired", "suspended", "revoked",
    "wrong_domain", "forged_link", "unlinked",
)  # fmt: skip
