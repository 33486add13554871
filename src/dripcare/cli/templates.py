"""`dripcare templates check|preview` (SPEC 4, 9): parse, call templates, print."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dripcare.domain import inputs
from dripcare.domain.contacts import CHANNELS
from dripcare.delivery.template_check import MODALITIES, check_templates, sample_contexts
from dripcare.delivery.templates import Templates, TemplateError
from dripcare.cli.common import clinic_and_campaigns, console, fail, settings

app = typer.Typer(help="Check and preview the message templates.", no_args_is_help=True)


def _say(line: str) -> None:
    # soft_wrap: one problem stays one line, whatever the terminal width.
    console.print(line, markup=False, soft_wrap=True)


@app.command()
def check() -> None:
    """Render every template with sample patients (each language, discreet and not, each
    modality); exit 1 on any error: a missing value, a clinic value missing from
    [instructions], a discreet text naming a sensitive term, an SMS over max_segments."""
    clinic, campaigns = clinic_and_campaigns()
    errors, warnings = check_templates(settings().config_dir, settings().messages_dir, clinic, campaigns)
    for line in errors:
        _say(f"error: {line}")
    for line in warnings:
        _say(f"warning: {line}")
    verdict = "templates check failed" if errors else "templates OK"
    _say(f"{verdict}: {_count(len(errors), 'error')}, {_count(len(warnings), 'warning')} "
         f"({_count(len(campaigns), 'campaign')})")
    raise typer.Exit(1 if errors else 0)


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'' if number == 1 else 's'}"


@app.command()
def preview(
    campaign: Annotated[str, typer.Option(
        "--campaign", help="The campaign id, as dripcare campaigns list shows it.")],
    step: Annotated[str, typer.Option(
        "--step", help="The step id, as dripcare campaigns show shows it.")],
    channel: Annotated[Optional[str], typer.Option(
        "--channel", help="sms or email; default: every channel of the step.")] = None,
    locale: Annotated[Optional[str], typer.Option(
        "--locale", help="The patient's language, for example es; default: the clinic's.")] = None,
    discreet: Annotated[bool, typer.Option("--discreet", help="As a discreet patient sees it.")] = False,
    modality: Annotated[Optional[str], typer.Option(
        "--modality", help=f"How the session is given: {', '.join(MODALITIES)}; default: none recorded.")] = None,
) -> None:
    """Show one step as a sample patient would get it."""
    clinic, campaigns = clinic_and_campaigns()
    found = campaigns.get(campaign)
    if found is None:
        fail(f"unknown campaign {campaign!r}; campaigns: {', '.join(sorted(campaigns)) or 'none'}")
    the_step = found.step(step)
    if the_step is None:
        fail(f"campaign {campaign!r} has no step {step!r}; steps: {', '.join(s.id for s in found.steps)}")
    if channel is not None and channel not in CHANNELS:
        fail(f"--channel {channel!r} is not sms or email")
    if channel is not None and channel not in the_step.channels:
        fail(f"step {step!r} does not send by {channel}; it uses {', '.join(the_step.channels)}")
    modality = inputs.modality(modality)  # the same vocabulary, any case, as enroll and import
    locale = locale or clinic.locale
    label, context = sample_contexts(clinic, found, the_step, locale, discreet=(discreet,), filled=(True,),
                                     modalities=(modality,))[0]
    templates = Templates(settings().messages_dir, clinic)
    try:
        for each in [channel] if channel else the_step.channels:
            _show(templates, found.id, step, each, locale, context, f"{found.id}/{step} {each}, {locale}")
    except TemplateError as error:
        fail(str(error))
    _say(f"(sample: {label})")


def _show(templates: Templates, campaign_id: str, step_id: str, channel: str, locale: str,
          context: dict, title: str) -> None:
    console.rule(title, style="dim")
    if channel == "sms":
        sms = templates.render_sms(campaign_id, step_id, locale, context)
        _say(sms.text)
        footer = templates.clinic.sms_text("footer", locale)
        # The footer rides on the first SMS of an enrollment: show what it costs.
        first = templates.render_sms(campaign_id, step_id, locale, context, footer) if footer else sms
        _say(f"[{len(sms.text)} characters, {_count(sms.segments, 'segment')} {sms.encoding}; "
             f"{first.segments} with the first-message footer]")
    else:
        email = templates.render_email(campaign_id, step_id, locale, context)
        _say(f"Subject: {email.subject}\n")
        _say(email.text)
