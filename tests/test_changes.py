"""Change detection between two audits: a pure function, no database."""

from __future__ import annotations

from audits.changes import AuditRecord, FindingRecord, compare


def finding(rule: str, status: str, *evidence: tuple[str, str]) -> FindingRecord:
    return FindingRecord(
        rule,
        status,
        "major",
        rule,
        f"{rule} {status}",
        tuple({"url": u, "excerpt": x} for u, x in evidence),
    )


def record(audit_id: int, findings: list[FindingRecord], **kw) -> AuditRecord:
    base = {
        "domain": "shop.example",
        "reachable": True,
        "started_at": None,
        "badge_verdict": "valid",
        "policy_url": "http://shop.example/privacy",
        "policy_sentences": [f"We collect data item {i}." for i in range(10)],
    }
    base.update(kw)
    return AuditRecord(audit_id=audit_id, findings={f.rule_id: f for f in findings}, **base)


def kinds(changes):
    return sorted((c["kind"], c["rule_id"]) for c in changes)


def test_regressions_fixes_and_evidence_changes():
    before = record(
        1,
        [
            finding("a", "pass", ("http://s/", "x")),
            finding("b", "fail"),
            finding("c", "pass", ("http://s/", "old text")),
            finding("d", "pass"),
            finding("e", "error"),
            finding("f", "warn"),
        ],
    )
    after = record(
        2,
        [
            finding("a", "fail"),
            finding("b", "pass", ("http://s/", "y")),
            finding("c", "pass", ("http://s/", "new text")),
            finding("d", "review"),
            finding("e", "fail"),  # could not check before: not a known regression
            finding("f", "pass"),
            finding("g", "fail"),  # a new rule that fails
        ],
    )
    changes = compare(before, after)
    assert kinds(changes) == [
        ("evidence_changed", "c"),
        ("fix", "b"),
        ("fix", "f"),
        ("regression", "a"),
        ("regression", "d"),
        ("regression", "g"),
    ]
    a = next(c for c in changes if c["rule_id"] == "a")["detail"]
    assert a["before"]["audit_id"] == 1 and a["before"]["evidence"] == [
        {"url": "http://s/", "excerpt": "x"}
    ]
    assert a["after"]["audit_id"] == 2 and a["after"]["status"] == "fail"


def test_same_audit_twice_is_no_change():
    one = record(1, [finding("a", "pass", ("u", "x")), finding("b", "fail")])
    assert compare(one, record(2, [finding("a", "pass", ("u", "x")), finding("b", "fail")])) == []
    assert compare(None, one) == []  # a first audit has nothing to compare with


def test_policy_sentences_added_removed_and_shrink_is_news():
    old = [f"Sentence number {i} about how we use your data." for i in range(10)]
    small_edit = [*old[:9], "We now keep data for two years."]
    change = compare(
        record(1, [], policy_sentences=old), record(2, [], policy_sentences=small_edit)
    )
    (c,) = change
    assert c["kind"] == "policy_changed"
    assert c["detail"]["added"] == ["We now keep data for two years."]
    assert c["detail"]["removed"] == [old[9]]
    assert not c["detail"]["significant"]
    halved = compare(record(1, [], policy_sentences=old), record(2, [], policy_sentences=old[:5]))
    assert halved[0]["detail"]["significant"] and halved[0]["detail"]["ratio"] == 0.5
    assert halved[0]["detail"]["removed_count"] == 5
    gone = compare(
        record(1, [], policy_sentences=old),
        record(2, [], policy_url=None, policy_sentences=None),
    )
    assert gone[0]["detail"]["removed_policy"] and gone[0]["detail"]["significant"]


def test_badge_verdict_change():
    (c,) = compare(record(1, []), record(2, [], badge_verdict="forged_link"))
    assert c["kind"] == "badge_changed"
    assert (c["detail"]["before"], c["detail"]["after"]) == ("valid", "forged_link")


def test_unreachable_once_is_noise_three_times_is_a_finding():
    last_good = record(1, [finding("a", "pass")])
    down = [
        record(n, [finding("a", "error")], reachable=False, unreachable_streak=n - 1)
        for n in (2, 3, 4, 5)
    ]
    assert compare(last_good, down[0]) == []  # streak 1
    assert compare(last_good, down[1]) == []  # streak 2
    (c,) = compare(last_good, down[2])  # streak 3
    assert c["kind"] == "unreachable" and c["detail"]["streak"] == 3
    assert compare(last_good, down[3]) == []  # said once, not at every check
