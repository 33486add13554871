"""One-click unsubscribe links (SPEC 8, RFC 8058). A GET only shows what the button will
do (link scanners fetch GETs); a POST, the one-click request or the page's button, revokes
email consent. A forged or altered token gets 404 and changes nothing. The pages are
Jinja templates in web/templates/<locale>/, in the patient's locale, else the clinic's."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from dripcare.app import unsubscribe as use_case
from dripcare.web.context import current

blueprint = Blueprint("unsubscribe", __name__)
FALLBACK_LOCALE = "en"


@blueprint.get("/u/<token>")
def confirm_page(token: str):
    web = current()
    who = use_case.subscriber(web.rt, token, web.keys)
    if who is None:
        return page("not_valid", None, status=404)
    return page("confirm", who.locale, action=request.path)


@blueprint.post("/u/<token>")
def unsubscribe(token: str):
    """200 and no redirect (RFC 8058): mail providers post here without a browser."""
    web = current()
    who = use_case.subscriber(web.rt, token, web.keys)
    if who is None:
        return page("not_valid", None, status=404)
    use_case.unsubscribe(web.rt, who)
    return page("done", who.locale)


def page(name: str, locale: str | None, status: int = 200, **context):
    clinic = current().rt.clinic
    names = [f"{tag}/{name}.html" for tag in locale_chain(locale, clinic.locale)]
    template = current_app.jinja_env.select_template(names)
    lang = template.name.split("/")[0]
    return render_template(template, lang=lang, clinic_name=clinic.sms_name, **context), status


def locale_chain(locale: str | None, clinic_locale: str) -> list[str]:
    """es-MX, es, then the clinic's locale and its language, then English."""
    tags = []
    for tag in (locale, clinic_locale, FALLBACK_LOCALE):
        if tag:
            tag = tag.replace("_", "-").lower()
            tags += [tag, tag.split("-")[0]]
    return list(dict.fromkeys(tags))
