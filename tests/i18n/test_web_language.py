"""Which language a page speaks: the user's setting, else the browser's Accept-Language, else
English; the setting on the account page and, for admins, in user management."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from segment_export.db.models import User
from tests.api.harness import AppWorld, app_world, make_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorld]:
    with app_world(make_settings(tmp_path_factory.mktemp("i18n")), profiles=0) as site:
        yield site


def _language_of(world: AppWorld, role: str) -> str | None:
    with world.runtime.sessions() as db:
        return db.scalar(select(User.language).where(User.username == world.users[role].username))


@pytest.mark.parametrize(("accept", "lang", "heading"), [
    ("ms-MY,ms;q=0.9,en;q=0.8", "ms", "Daftar masuk"),
    ("fr-FR, ms;q=0.5", "ms", "Daftar masuk"),
    ("fr-FR, de;q=0.5", "en", "Sign in"),
    ("", "en", "Sign in"),
])
def test_sign_in_page_follows_the_browser(world: AppWorld, accept: str, lang: str,
                                          heading: str) -> None:
    page = world.web().get("/login", headers={"Accept-Language": accept} if accept else {})
    assert page.status_code == 200
    assert f'<html lang="{lang}">' in page.text
    assert f"<h1>{heading}</h1>" in page.text
    assert page.headers["content-language"] == lang


def test_the_setting_beats_the_browser_and_can_be_switched(world: AppWorld) -> None:
    web = world.browser("contributor")
    english = {"Accept-Language": "en-GB"}
    assert "<h1>Exports</h1>" in web.get("/data/exports", headers=english).text
    saved = web.post("/account/language", {"language": "ms"})
    assert saved.status_code == 303
    assert _language_of(world, "contributor") == "ms"
    page = web.get("/data/exports", headers=english).text
    assert '<html lang="ms">' in page
    assert "<h1>Eksport</h1>" in page
    assert "Pentadbir" not in page  # a contributor's navigation has no Admin section
    # Not chosen: the browser decides again.
    web.post("/account/language", {"language": ""})
    assert _language_of(world, "contributor") is None
    assert "<h1>Eksport</h1>" in web.get("/data/exports", headers={"Accept-Language": "ms"}).text
    assert "<h1>Exports</h1>" in web.get("/data/exports", headers=english).text


def test_an_unknown_language_is_refused_naming_the_field(world: AppWorld) -> None:
    web = world.browser("viewer")
    refused = web.post("/account/language", {"language": "klingon"})
    assert refused.status_code == 422
    assert "language: &#39;klingon&#39; is not one of en, ms" in refused.text
    assert _language_of(world, "viewer") is None


def test_admins_set_the_language_of_others_and_nobody_else_does(world: AppWorld) -> None:
    viewer = world.users["viewer"].username
    denied = world.browser("contributor").post(f"/admin/users/{viewer}/language",
                                               {"language": "ms"})
    assert denied.status_code == 403
    assert _language_of(world, "viewer") is None
    admin = world.browser("admin")
    users_page = admin.get("/admin/users").text
    assert f'action="/admin/users/{viewer}/language"' in users_page
    done = admin.post(f"/admin/users/{viewer}/language", {"language": "ms"})
    assert done.status_code == 303
    assert _language_of(world, "viewer") == "ms"
    assert "<h1>Eksport</h1>" in world.browser("viewer").get("/data/exports").text
    admin.post(f"/admin/users/{viewer}/language", {"language": ""})
    assert _language_of(world, "viewer") is None


def test_error_pages_speak_the_page_language_and_the_api_stays_english(world: AppWorld) -> None:
    malay = {"Accept-Language": "ms"}
    page = world.browser("viewer").get("/runs/no-such-run", headers=malay)
    assert page.status_code == 404
    assert "<h1>Tidak ditemui</h1>" in page.text
    assert "Ralat 404" in page.text
    problem = world.api("viewer").get("/api/runs/no-such-run", headers=malay)
    assert problem.status_code == 404
    assert problem.json()["title"] == "Not found"


def test_a_refused_form_speaks_malay_and_typed_text_stays_text(world: AppWorld) -> None:
    admin = world.browser("admin")
    admin.post("/account/language", {"language": "ms"})
    try:
        page = admin.get("/settings/schedule")
        assert "<h1>Jadual segar semula sistem</h1>" in page.text
        refused = admin.post("/settings/schedule", {"cron": "0 5 * * *",
                                                    "timezone": "<b>Bulan</b>%s"})
        assert refused.status_code == 422
        # The error in Malay with what was typed: escaped, never markup, never formatted.
        assert "Zon waktu tidak dikenali &#39;&lt;b&gt;Bulan&lt;/b&gt;%s&#39;" in refused.text
        assert "Unknown time zone" not in refused.text
        assert "<b>Bulan</b>" not in refused.text
        assert "Betulkan konfigurasi yang dinamakan dalam mesej dan cuba lagi." in refused.text
        saved = admin.post("/settings/schedule", {"cron": "", "timezone": "UTC"})
        assert saved.status_code == 303
        notice = admin.get("/settings/schedule").text
        assert "Jadual segar semula telah dikosongkan." in notice
        segments = admin.get("/data/segments").text
        assert "<h1>Segmen</h1>" in segments
        assert "Belum ada profil" in segments
    finally:
        admin.post("/account/language", {"language": ""})
