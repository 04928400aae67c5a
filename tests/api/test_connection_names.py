"""A connection's name, however it is changed: the API, the page and creation refuse an empty
name and one another connection has, naming the field (a rename to a taken name was a 500)."""

from __future__ import annotations

from tests.api.harness import AppWorld


def test_a_rename_to_a_taken_or_empty_name_is_refused_on_every_surface(
        site_any_db: AppWorld) -> None:
    site = site_any_db
    first, second = site.connection(), site.connection()
    admin = site.api("admin")
    taken = admin.patch(f"/api/connections/{second.id}",
                        json={"display_name": first.display_name})
    assert taken.status_code == 422, taken.text
    assert taken.json()["field"] == "display_name"
    assert "already exists" in taken.json()["detail"]
    blank = admin.patch(f"/api/connections/{second.id}", json={"display_name": "  "})
    assert blank.status_code in (400, 422), blank.text

    browser = site.browser("admin")
    page = browser.post(f"/admin/connections/{second.id}", {
        "display_name": first.display_name, "usable_by": "admins"})
    assert page.status_code == 422, page.text
    assert "already exists" in page.text
    empty = browser.post(f"/admin/connections/{second.id}", {
        "display_name": " ", "usable_by": "admins"})
    assert empty.status_code == 422, empty.text
    assert "needs a display name" in empty.text
    assert admin.get(f"/api/connections/{second.id}").json()["display_name"] == \
        second.display_name
