"""Envelope parsing of imaplib's FETCH answers, including shapes pymap does not produce."""

from __future__ import annotations

from datetime import UTC, datetime

from jobs.execution.mailsync.client import encode_modified_utf7, quote_mailbox
from jobs.execution.mailsync.envelope import parse_date, parse_fetch_response


def test_items_after_the_literal_and_unsolicited_lines_are_handled():
    data = [
        b"3 (FLAGS (\\Seen))",  # unsolicited flag change of another message: skipped
        (b"4 (BODY[HEADER.FIELDS (SUBJECT)] {18}", b"Subject: Second\r\n\r\n"),
        b" UID 12 RFC822.SIZE 99 FLAGS (\\Answered))",  # items after the literal
        b'5 (UID 13 RFC822.SIZE 7 FLAGS () BODY[HEADER.FIELDS (SUBJECT)] "")',  # no literal
    ]

    envelopes = parse_fetch_response(data)

    assert [(e.uid, e.subject, e.size, e.flags) for e in envelopes] == [
        (12, "Second", 99, ["\\Answered"]),
        (13, "", 7, []),
    ]


def test_dates():
    assert parse_date("Tue, 04 Mar 2025 10:00:00 +0100") == datetime(2025, 3, 4, 9, tzinfo=UTC)
    assert parse_date("Tue, 04 Mar 2025 10:00:00 -0000").tzinfo is not None
    assert parse_date("") is None
    assert parse_date("yesterday-ish") is None
    assert parse_date("Tue, 04 Mar 99999 10:00:00 +0100") is None


def test_mailbox_names_are_quoted_and_encoded():
    assert quote_mailbox("INBOX") == '"INBOX"'
    assert quote_mailbox('a "b" \\c') == '"a \\"b\\" \\\\c"'
    assert encode_modified_utf7("Reçus & co") == "Re&AOc-us &- co"  # RFC 3501 5.1.3
    assert encode_modified_utf7("日本語") == "&ZeVnLIqe-"
