"""What actually filled a result, said to a scientist (layer name, notification, status).

Engines that may fill with another method than the one chosen (``learned`` falls back to
linear or biharmonic when it cannot be checked or loses its self-validation; ``auto``
picks a method) record it in their provenance: ``extra["filled_with"]``,
``extra["choice_reason"]``, ``extra["learned_lost_self_validation"]``,
``extra["learned_not_verifiable"]`` and ``extra["self_validation"]`` (the held-out
scores). :func:`fill_outcome` reads those keys, never the engine's developer-facing
reason text, and builds the layer label and one message that agree with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Name of the advanced field that keeps the network's result (its widget label).
FORCE_FIELD = "'force learned' (under Advanced)"


def force_field(chosen: str) -> str:
    """The advanced field that keeps ``chosen``'s result: ``'force stylegan'`` for stylegan."""
    return f"'force {chosen}' (under Advanced)" if chosen != "learned" else FORCE_FIELD


@dataclass(frozen=True)
class FillOutcome:
    """The method chosen, the one that filled, and how to say so.

    Attributes
    ----------
    chosen : str
        The method picked in the dock (``"learned"``).
    filled : str
        The method whose pixels are in the result (``"linear"``).
    label : str
        The method part of the result layer's name: ``"linear (learned fallback)"``,
        ``"flow (auto)"`` or the method itself.
    message : str
        One or two sentences for the notification and the status line.
    warning : bool
        Whether the user should look twice (a fallback, or a network kept although it lost).
    """

    chosen: str
    filled: str
    label: str
    message: str
    warning: bool


def _scores(extra: dict[str, Any]) -> tuple[dict[str, dict], int, str]:
    """The scores that decided: the exact z-check, else the in-plane exact-gap check."""
    validation = extra.get("self_validation") or {}
    in_plane = extra.get("in_plane_check") or {}
    if in_plane.get("scores") and not (extra.get("z_check_exact") and validation.get("scores")):
        validation = in_plane
    return (
        dict(validation.get("scores") or {}),
        int(validation.get("count") or 0),
        str(validation.get("what") or ""),
    )


def _ranking(scores: dict[str, dict]) -> str:
    """``"learned 29.41 dB, linear 27.79 dB"`` (best first, PSNR)."""
    ordered = sorted(scores, key=lambda m: -float(scores[m].get("psnr", float("-inf"))))
    return ", ".join(f"{m} {float(scores[m]['psnr']):.2f} dB" for m in ordered)


def _held_out(count: int, noun: str) -> str:
    return f"{count} held-out {noun}" if count else f"held-out {noun}"


def fill_outcome(chosen: str, provenance: dict[str, Any] | None, task: str) -> FillOutcome | None:
    """How to present a result whose provenance says which method filled it.

    Parameters
    ----------
    chosen : str
        The method chosen in the dock.
    provenance : dict
        The result's provenance (``None`` or without ``extra["filled_with"]``: nothing to say).
    task : str
        ``"interpolate"`` or ``"inpaint"`` (words for what was held out).

    Returns
    -------
    FillOutcome or None
    """
    extra = (provenance or {}).get("extra") or {}
    filled = extra.get("filled_with")
    if not filled:
        return None
    filled = str(filled)
    scores, count, _ = _scores(extra)
    noun = "kept slices of this volume" if task == "interpolate" else "known regions of this image"
    held_out = _held_out(count, noun)
    if chosen == "auto":
        if extra.get("learned_not_verifiable"):
            why = (
                "gaps this wide cannot be checked on the volume's own slices, so the network "
                "was not used"
            )
            if scores:
                why += (
                    f"; of linear and flow, {filled} did better on narrower gaps "
                    f"(PSNR {_ranking(scores)})"
                )
        elif scores:
            why = f"the best score on {held_out} (PSNR {_ranking(scores)})"
        else:
            why = "no kept slice could be held out to compare methods, so the safe default"
        return FillOutcome(
            chosen, filled, f"{filled} (auto)", f"auto filled with {filled}: {why}.", False
        )
    if filled != chosen:
        if extra.get("learned_not_verifiable"):
            why = (
                "The network's result cannot be checked here: no kept slice of this volume "
                "can be rebuilt across a gap as wide as the missing one, so its error is unknown"
            )
        elif extra.get("learned_lost_self_validation") and chosen == "stylegan":
            scored = f" (PSNR {_ranking(scores)})" if scores else ""
            why = (
                f"On {held_out} it did not keep the texture (GMSD) better than {filled} "
                f"within 1 dB PSNR{scored}"
            )
        elif extra.get("learned_lost_self_validation"):
            scored = f" (PSNR {_ranking(scores)})" if scores else ""
            why = f"On {held_out} it did worse than {filled}{scored}"
        else:
            why = "It could not be used on this input"
        message = (
            f"{chosen} was not used: the result is {filled}. {why}. No uncertainty map was "
            f"made. Tick {force_field(chosen)} to use the network anyway."
        )
        return FillOutcome(chosen, filled, f"{filled} ({chosen} fallback)", message, True)
    if extra.get("learned_lost_self_validation"):
        message = (
            f"{chosen} filled the result as asked ({force_field(chosen)}), although it did worse on "
            f"{held_out}" + (f" (PSNR {_ranking(scores)})." if scores else ".")
        )
        return FillOutcome(chosen, filled, chosen, message, True)
    if chosen == "stylegan" and len(scores) > 1:
        # stylegan passes within 1 dB PSNR of linear and must beat it on texture (GMSD)
        texture = sorted(
            (m for m in scores if "gmsd" in scores[m]), key=lambda m: scores[m]["gmsd"]
        )
        gmsd = ", ".join(f"{m} {float(scores[m]['gmsd']):.3f}" for m in texture)
        message = (
            f"stylegan kept the texture better than linear on {held_out} (GMSD, lower is "
            f"better: {gmsd}) within 1 dB PSNR ({_ranking(scores)}), so it filled the result."
        )
    elif len(scores) > 1:
        message = (
            f"{chosen} did better on {held_out} (PSNR {_ranking(scores)}), so it filled the result."
        )
    else:
        message = f"{chosen} filled the result; it could not be checked on held-out data."
    return FillOutcome(chosen, filled, chosen, message, False)


#: Developer-facing bits of engine messages: repository paths and CLI flags in brackets.
_DEVELOPER_ASIDE = re.compile(r"\s*\((?:[^()]*\.md|--[\w-]+)\)")


def plain_message(text: str) -> str:
    """An engine's progress message without repository paths or CLI flags in brackets, and
    with parameter spellings (``force_learned=True``) as the dock labels them."""
    text = _DEVELOPER_ASIDE.sub("", text)
    return re.sub(
        r"\b([a-z]+(?:_[a-z]+)+)=True\b", lambda m: f"'{m.group(1).replace('_', ' ')}'", text
    )


def _keyword(name: str, value: str) -> str:
    """``name=value`` as a script writes it (text values quoted)."""
    from ..core.validation import is_placeholder

    plain = value in ("True", "False", "None") or is_placeholder(value)
    plain = plain or bool(re.fullmatch(r"[-+]?\d[\d.e+-]*", value))
    return f"{name}={value if plain else repr(value)}"


def dock_spelling(name: str, value: str, labels: dict[str, str] | None = None) -> str:
    """How a dock shows the option ``name=value`` of a message: by its field label.

    ``overwrite=True`` -> ``'overwrite' ticked``, ``resume=False`` -> ``'resume'
    unticked``, ``precision='bfloat16'`` -> ``'precision' set to bfloat16``, a
    placeholder (``series=N``) -> ``'series'``, with the dock's own label (``labels``:
    :func:`dock_labels`). An option the dock has no field for is not offered as one:
    it stays the keyword, said to be one of scripts and the command line.
    """
    from ..core.validation import is_placeholder

    label = (labels or {}).get(name)
    if label is None:
        return (
            f"{_keyword(name, value)} (an option of scripts and the command line, not of this dock)"
        )
    label = f"'{label}'"
    if value == "True":
        return f"{label} ticked"
    if value == "False":
        return f"{label} unticked"
    return label if is_placeholder(value) else f"{label} set to {value}"


def _widget_label(widget: Any) -> str | None:
    """The text a magicgui value widget shows beside its value (a check box: its text)."""
    text = getattr(widget, "text", None)
    label = text if isinstance(text, str) and text else getattr(widget, "label", None)
    return label if isinstance(label, str) and label else None


def dock_labels(dock: Any) -> dict[str, str]:
    """The fields a dock shows, by option name: ``{name: label}``.

    From its parameter forms (the selected method's first where it offers several),
    then its own widgets (kept as attributes, e.g. ``self.resume``, or in ``self.form``),
    keyed by their name and attribute name.
    """
    from magicgui.widgets.bases import ValueWidget

    from ._fields import ParamsForm
    from ._methods import MethodChooser

    labels: dict[str, str] = {}
    forms: list[ParamsForm] = []
    members = dict(vars(dock)) if hasattr(dock, "__dict__") else {}
    for value in members.values():
        if isinstance(value, MethodChooser):
            forms.insert(0, value.form)
            forms.extend(value.forms.values())
        elif isinstance(value, ParamsForm):
            forms.append(value)
    for form in forms:
        for name, spec in form.specs.items():
            labels.setdefault(name, spec.label)
    widgets = [(attr, w) for attr, w in members.items() if isinstance(w, ValueWidget)]
    own = members.get("form")
    if own is not None and not isinstance(own, ParamsForm):
        try:
            widgets += [(None, w) for w in own if isinstance(w, ValueWidget)]
        except TypeError:
            pass
    for attr, widget in widgets:
        label = _widget_label(widget)
        for key in (getattr(widget, "name", None), attr):
            if label and isinstance(key, str) and key:
                labels.setdefault(key, label)
    return labels


def dock_message(error: BaseException, labels: dict[str, str] | None = None) -> str:
    """An error's message as a dock shows it: the options it names as the dock's fields.

    Core messages spell options as keyword arguments and list them in the error's
    ``options`` (see :mod:`napari_scigen.core.validation`); a
    :class:`~napari_scigen.core.params.ParameterError` also names its field first,
    shown here by its label (``'tile size' must be >= 64``).

    Parameters
    ----------
    error : BaseException
        What the job raised.
    labels : dict of str to str, optional
        The dock's field labels (:func:`dock_labels`).

    Returns
    -------
    str
    """
    from ..core.validation import option_names, spell_options, subject_field

    text = str(error).strip() or type(error).__name__
    field = subject_field(error)
    if field and text.startswith(field + " "):
        label = (labels or {}).get(field) or field.replace("_", " ")
        text = f"'{label}'" + text[len(field) :]
    return spell_options(
        text, option_names(error), lambda name, value: dock_spelling(name, value, labels)
    )
