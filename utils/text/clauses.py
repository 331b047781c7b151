"""A request cut into clauses, and which clauses ask to keep something rather than remove it.

"remove the noise but keep the rain, I like it" is cut as "remove the noise" / "keep the rain" /
"I like it"; the second asks to keep what it names, and the third, a short clause with no verb of
its own after it, goes with it. Only the cue is found here, by its words ("keep", "leave",
"don't touch", "no denoising", "the haze is fine"); what a clause names is read by the learned
instruction head (``utils.text.understand``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Where a compound request is cut into clauses: punctuation, conjunctions and sequencing words
_JOINERS = r"(?:and then|as well as|and|then|also|plus|but|while|with|after that|afterwards)"
_CLAUSE_BREAK = re.compile(rf"(\s*[,;:/&+.!?]+\s*|\s+{_JOINERS}\s+)", re.IGNORECASE)
_LEADING_JOINER = re.compile(rf"^(?:{_JOINERS}(?:\s+|$))+", re.IGNORECASE)  # ", and then the noise" -> "the noise"
# A joiner after which a verb-less clause continues the clause before it ("keep the rain and the haze")
_LIST_JOINER = re.compile(r"^\s*(?:,|and|as well as|plus)?\s*$", re.IGNORECASE)

_NEGATION = r"(?:don'?t|do not|does not|doesn'?t|never|not|no need to|without|stop|avoid|skip(?:ping)?|hold off on|" \
            r"forget(?: about)?|ignore|no more)"
_ACTION = r"(?:remov\w*|touch\w*|fix\w*|clean\w*|clear\w*|chang\w*|mess\w* with|bother\w*( with)?|worry about|" \
          r"correct\w*|deal with|reduc\w*|get rid|take (?:out|away)|erase|lose|kill|lift\w*|deno\w*|dehaz\w*|" \
          r"derain\w*|deblur\w*|brighten\w*|lighten\w*|sharpen\w*|brighter|lighter|sharper|do anything)"
_KEEP_CUES = re.compile("|".join((
    # a keep verb, unless negated itself ("I didn't keep still")
    r"(?<!n't )(?<!not )(?<!dont )\b(?:keep|keeping|leave|leaving|preserve|preserving|retain|retaining)\b",
    rf"\b{_NEGATION}\s+(?:\w+\s+){{0,2}}?{_ACTION}",  # "don't touch", "please do not sharpen", "no need to remove"
    r"\bno\s+(?:deno\w*|dehaz\w*|derain\w*|deblur\w*|brighten\w*|lighten\w*|sharpen\w*|noise (?:reduction|removal))",
    r"\bnot\s+(?:the|any|its|my)\b",  # "remove the rain but not the fog"
    r"\b(?:forget(?: about)?|ignore|never mind|skip|except(?: for)?)\s+(?:the|that|its|any|my)\b",
    r"\b(?:is|are|'s|looks|seems)\s+(?:\w+\s+)?(?:fine|ok|okay|alright|intentional|deliberate|on purpose|wanted|"
    r"part of|the point|meant to|nice|great|good|lovely|beautiful)\b",
    r"\b(?:to|can|may|should|must|let it)\s+stay\b|\bstays\b|\bon purpose\b|\buntouched\b|\bas it is\b|\bas is\b",
    r"\b(?:i|we)\s+(?:really\s+)?(?:like|love)\s+(?:the|that|this|its|how)\b",
    r"\b(?:i|we)\s+(?:don'?t|do not)\s+mind\b|\b(?:i'?m|i am|we'?re)\s+(?:fine|happy|ok|okay) with\b",
)), re.IGNORECASE)
# A clause with one of these words says what to do on its own, so it never just continues the one before it
_OWN_VERB = re.compile(rf"\b(?:{_ACTION}|go|goes|gone|make|restore|need\w*|want|should|has to|have to|is|are|"
                       r"was|were|'s|does|doesn'?t|isn'?t|aren'?t|don'?t|not|no)\b", re.IGNORECASE)
# Words dropped from a keep clause before the head reads what it names ("don't touch the haze" -> "the haze")
_CUE_WORDS = frozenset("""keep keeping leave leaving preserve preserving retain retaining don't dont do not does
    doesn't never no need to without stop avoid skip skipping hold off on forget about ignore more remove removing
    touch touching fix fixing clean cleaning clear clearing change changing mess with bother worry correct deal
    reduce get rid of take out away erase lose kill is are 's look looks seem seems fine ok okay alright
    intentional deliberate purpose wanted part the point meant can may should must stay stays untouched as it
    i we really like love mind i'm im am happy please just alone in nice great good lovely beautiful never except
    for let""".split())


@dataclass(frozen=True)
class Clause:
    """One clause of a request."""

    text: str  # as written, whitespace normalised
    keep: bool  # it asks to keep what it names (or continues a clause that does)
    joiner: str  # the separator before it, as written ("" for the first)

    def named(self) -> str:
        """What a keep clause names, without its cue words ("leave the haze as it is" -> "the haze")."""
        words = [w for w in self.text.split() if w.lower().strip(".,;:!?") not in _CUE_WORDS]
        return " ".join(words)


def _pieces(text: str) -> list[tuple[str, str]]:
    """``(joiner, clause)`` pairs of a whitespace-normalised request, empty clauses dropped."""
    parts = _CLAUSE_BREAK.split(text)  # clause, joiner, clause, joiner, ...
    found: list[tuple[str, str]] = []
    joiner = ""
    for i, part in enumerate(parts):
        if i % 2:
            joiner += part
            continue
        clause = _LEADING_JOINER.sub("", part.strip())
        if clause:
            found.append((joiner, clause))
            joiner = ""
    return found


def split_clauses(text: str) -> list[str]:
    """The request cut at commas, semicolons and words such as "and", "then", "also", "with";
    empty pieces dropped. One clause (the text itself) when nothing cuts it."""
    text = " ".join(text.split())
    return [clause for _, clause in _pieces(text)] or [text]


def is_keep_cue(text: str) -> bool:
    """True when the clause asks to keep what it names, by its own words."""
    return bool(_KEEP_CUES.search(text.replace("\u2019", "'")))


def clauses(text: str) -> list[Clause]:
    """The request's clauses, each marked ``keep`` when it asks to keep what it names, or when it is
    a short clause with no verb of its own listed after one that does ("keep the rain and the haze")."""
    text = " ".join(text.split())
    found: list[Clause] = []
    for joiner, piece in _pieces(text) or [("", text)]:
        keep = is_keep_cue(piece)
        if not keep and found and found[-1].keep:
            continues = _LIST_JOINER.match(joiner) and len(piece.split()) <= 4 and not _OWN_VERB.search(piece)
            keep = bool(continues)
        found.append(Clause(piece, keep, joiner))
    return found
