"""Import problems as a code and its parameters, read in the reader's language.

A problem is stored on the batch (and returned by the preview) as
`{"line", "code", "params", "message"}`: `message` is the English sentence (for logs, the
management command and rows stored before codes existed), `code` names the sentence in
`MESSAGES` and `params` fills it. The pages and the API render `code` + `params` in the
language of the request; a row without a known code shows its stored `message` as it is.

A parameter may itself be a problem (`{"code", "params"}`): "question 2: empty stem", or a
unit such as "line"/"record", so the whole sentence reads in one language.
"""

from __future__ import annotations

from django.utils.translation import gettext, gettext_noop

# The English sentences are the catalogue's msgids: keep them as they were before codes, so
# logs, tests and old rows read the same. `%(x)r` quotes a value as Python does ('x').
MESSAGES: dict[str, str] = {
    # units and small words used inside other sentences
    "unit_line": gettext_noop("line"),
    "unit_record": gettext_noop("record"),
    "unit_lines": gettext_noop("lines"),
    "unit_records": gettext_noop("records"),
    "what_fields": gettext_noop("fields"),
    "what_columns": gettext_noop("columns"),
    "what_nested_fields": gettext_noop("fields of the %(key)r questions"),
    "none": gettext_noop("none"),
    # the file as a whole
    "utf16": gettext_noop("The file is UTF-16 text; save it as UTF-8 and upload it again."),
    "binary": gettext_noop(
        "This is a binary file (a spreadsheet, archive or image?), not text; export the "
        "questions as CSV, JSON or JSON Lines in UTF-8."
    ),
    "zip": gettext_noop("This is a ZIP or Excel file; save the sheet as CSV (UTF-8)."),
    "no_records": gettext_noop("the file holds no records"),
    "bad_encoding_on_line": gettext_noop(
        "bad encoding: not UTF-8 (byte 0x%(byte)s on line %(line)s); save the file as UTF-8"
    ),
    "document_is_jsonl": gettext_noop(
        "This file is JSON Lines (one JSON object per line), not one JSON document; choose a "
        "JSONL format or “Detect from the file”."
    ),
    "jsonl_is_document": gettext_noop(
        "This file is one JSON document, not JSON Lines (one object per line); choose "
        "“JSON document” or “Detect from the file”."
    ),
    "invalid_json_document": gettext_noop(
        "This is not valid JSON (%(detail)s) at line %(line)s column %(column)s."
    ),
    "records_path_missing": gettext_noop(
        "The records path %(path)r is not in the file (no %(part)r); leave it empty to find "
        "the records automatically."
    ),
    "records_path_not_list": gettext_noop("The records path %(path)r names no list of records."),
    "no_record_list": gettext_noop(
        "This JSON document holds no list of records (objects with a question and its "
        "options); give the records path if they are there."
    ),
    "several_record_lists": gettext_noop(
        "This JSON document holds several lists of records (%(names)s); give the records path "
        "to say which one to import."
    ),
    "layout_unknown": gettext_noop(
        "Could not recognise the file's layout. Choose a format, or give a field mapping "
        "(see docs/import-formats.md)."
    ),
    "layout_no_question_column": gettext_noop(
        "Could not recognise the file's layout: no column holds the question. Give a field "
        "mapping (see docs/import-formats.md)."
    ),
    "layout_no_header": gettext_noop(
        "Could not recognise the file's layout: it has no header row and its columns are not "
        "question, A, B, C, D, answer. Give a mapping by column number, e.g. "
        "question=1,A=2,B=3,C=4,D=5,answer=6 (see docs/import-formats.md)."
    ),
    "cmmlu_header": gettext_noop(
        "A CMMLU-style CSV starts with the header ,Question,A,B,C,D,Answer"
    ),
    "unknown_format": gettext_noop("Unknown format %(format)r; choose one of %(formats)s"),
    "not_json": gettext_noop("This file is not JSON: it does not start with { or [."),
    "document_not_csv": gettext_noop(
        "This file is a JSON document, not CSV; choose “Detect from the file”."
    ),
    "jsonl_not_csv": gettext_noop(
        "This file is JSON Lines, not CSV; choose “Detect from the file”."
    ),
    "not_jsonl": gettext_noop("This file is not JSON Lines (its first line is not a JSON object)."),
    "give_up_first": gettext_noop(
        "The first %(n)s %(units)s hold not one readable record; this does not look like a "
        "seed file in this format."
    ),
    "give_up_run": gettext_noop(
        "%(n)s %(units)s in a row, from %(unit)s %(start)s, are not readable records; this "
        "does not look like a seed file in this format."
    ),
    "gave_up": gettext_noop("%(reason)s The first problem: %(unit)s %(line)s: %(problem)s"),
    "gave_up_no_problem": gettext_noop("%(reason)s The first problem: none"),
    "nothing_readable": gettext_noop(
        "Not one %(unit)s of this file is a readable record; this does not look like a seed "
        "file in this format. First problem: %(problem)s"
    ),
    "mapping_lacks": gettext_noop(
        "The mapping names %(what)s the file does not have: %(missing)s "
        "(the file has: %(available)s)."
    ),
    "mapping_invalid_json": gettext_noop("The mapping is not valid JSON: %(detail)s"),
    "mapping_not_object": gettext_noop('A JSON mapping is an object: {"question": "…", …}'),
    "mapping_entry": gettext_noop("Mapping entries look like field=column, not %(part)r"),
    "mapping_unknown_fields": gettext_noop(
        "Unknown field(s) in mapping: %(unknown)s; known: %(known)s"
    ),
    "mapping_needs_question_answer": gettext_noop(
        "A mapping must name at least the question and answer fields"
    ),
    "internal_preview": gettext_noop(
        "The file could not be read (an internal error, logged for the developers)."
    ),
    "internal_import": gettext_noop(
        "The import stopped on an internal error (logged for the developers); nothing was imported."
    ),
    # one line, row or record
    "bad_encoding": gettext_noop(
        "bad encoding: not UTF-8 (byte 0x%(byte)s at column %(column)s); save the file as UTF-8"
    ),
    "invalid_json_line": gettext_noop("not valid JSON: %(detail)s at column %(column)s"),
    "invalid_json_line_cr": gettext_noop(
        "not valid JSON: %(detail)s at column %(column)s (the line holds a stray carriage return)"
    ),
    "line_not_object": gettext_noop("each line must be a JSON object"),
    "record_not_object": gettext_noop("a record must be a JSON object"),
    "stray_cr": gettext_noop(
        "the line holds a stray carriage return (\\r); save the file with ordinary line ends"
    ),
    "field_too_long": gettext_noop("a field runs on for more than a megabyte (an unclosed quote?)"),
    "column_count": gettext_noop("has %(n)s columns; the header has %(header)s"),
    "repeated": gettext_noop("%(unit)s %(line)s repeats %(unit)s %(first)s; kept once"),
    "duplicate_id": gettext_noop("duplicate id %(id)r (first on %(unit)s %(first)s)"),
    "changed_content": gettext_noop(
        "id %(id)r already exists in this project with different content; give the changed "
        "question a new id"
    ),
    "case_without_questions": gettext_noop("%(key)s: the case has no questions"),
    "question_not_object": gettext_noop("question %(order)s: not an object"),
    "in_question": gettext_noop("question %(order)s: %(problem)s"),
    "empty_stem": gettext_noop("empty stem (no question text)"),
    "no_options": gettext_noop("no options (none given, and none written into the stem)"),
    "options_unlabelled_text": gettext_noop(
        "options: a text that holds no labelled options (A. … B. …)"
    ),
    "options_bad_shape": gettext_noop(
        "options must be an object (A → text), a list, or lines “A. …”"
    ),
    "too_many_options": gettext_noop("too many options (%(n)s; at most 5, A–E)"),
    "bad_option_label": gettext_noop("option label %(label)r is not one of A–E"),
    "empty_option": gettext_noop("option %(label)s is empty"),
    "too_few_options": gettext_noop("too few options (%(n)s; need 4 or 5)"),
    "options_not_consecutive": gettext_noop(
        "options must be labelled consecutively from A (got %(labels)s)"
    ),
    "missing_answer": gettext_noop("missing answer key"),
    "several_answers": gettext_noop(
        "answer: %(n)s answers given (%(given)s); a question has one key"
    ),
    "answer_not_key": gettext_noop("answer: %(value)r is not a key"),
    "answer_not_number": gettext_noop("answer: %(value)r is not a letter or an option number"),
    "answer_matches_several": gettext_noop("answer: the text %(text)r matches options %(labels)s"),
    "answer_names_several": gettext_noop(
        "answer: %(text)r names several options; a question has one key"
    ),
    "answer_unrecognised": gettext_noop(
        "answer: %(text)r is not a letter, an option number or an option's text"
    ),
    "answer_out_of_range": gettext_noop("answer: option number %(n)s is out of range"),
    "index_base_unknown": gettext_noop(
        "answer: %(n)s is an option number, and the file does not show whether they count "
        "from 0 or from 1; set the answer index base"
    ),
    "answer_not_option": gettext_noop("answer key %(answer)r is not among the options %(labels)s"),
    "bad_question_type": gettext_noop("question type %(value)r must be K or S"),
    "bad_cognitive_level": gettext_noop(
        "unknown cognitive level %(value)r (recall, interpretation, problem_solving)"
    ),
    "bad_difficulty": gettext_noop("unknown difficulty %(value)r (easy, moderate, hard)"),
    "bad_language": gettext_noop("unknown language %(value)r (zh or en)"),
    "id_too_long": gettext_noop("id is longer than 200 characters"),
    "group_id_too_long": gettext_noop("group id is longer than 200 characters"),
}


class Msg(str):
    """A problem: the English sentence as a `str` (so logs and old callers read it as before),
    with the code and parameters that render it in any language."""

    code: str
    params: dict

    def __new__(cls, code: str, **params) -> Msg:
        if code not in MESSAGES:
            raise KeyError(f"unknown import message {code!r}")
        # The msgid is the English sentence; a parameter that is a Msg is English already.
        msg = super().__new__(cls, MESSAGES[code] % params)
        msg.code = code
        msg.params = params
        return msg

    def as_json(self) -> dict:
        return {"code": self.code, "params": _json_params(self.params)}

    def localized(self) -> str:
        return render(self.code, self.params)


def _json_params(params: dict) -> dict:
    return {k: v.as_json() if isinstance(v, Msg) else v for k, v in params.items()}


def _param(value):
    if isinstance(value, Msg):
        return value.localized()
    if isinstance(value, dict) and value.get("code") in MESSAGES:
        return render(value["code"], value.get("params") or {})
    return value


def render(code: str, params: dict) -> str:
    """The sentence for `code` in the active language."""
    return gettext(MESSAGES[code]) % {k: _param(v) for k, v in (params or {}).items()}


def problem_dict(line: int, message: str) -> dict:
    """How a problem is stored: line, English message, and code + params when it has them."""
    row = {"line": line, "message": str(message)}
    if isinstance(message, Msg):
        row.update(message.as_json())
    return row


def localize(problem) -> str:
    """A stored problem (dict), a `Msg` or a plain string, in the active language. Rows from
    before codes (or with a code this version does not know) show their English as stored."""
    if isinstance(problem, Msg):
        return problem.localized()
    if isinstance(problem, dict):
        code = problem.get("code")
        if code in MESSAGES:
            try:
                return render(code, problem.get("params") or {})
            except (KeyError, TypeError, ValueError):
                pass  # parameters that do not fit the sentence: show the stored English
        return str(problem.get("message", ""))
    return str(problem or "")


def localize_all(problems) -> list[dict]:
    """Stored problems for display or the API: each with `message` in the active language
    (code and params kept for programs)."""
    return [
        {**p, "message": localize(p)} if isinstance(p, dict) else {"message": localize(p)}
        for p in problems or []
    ]
