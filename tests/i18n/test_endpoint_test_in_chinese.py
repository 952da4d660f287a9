"""The endpoint test's result, as a Chinese admin reads it: the verdict, the reasoning style,
the structured-output mode, the notes and the failures, with no English interface word (the
server's own words go apart, in <code>, as it sent them)."""

import pytest
from django.urls import reverse

from tests.generation.conftest import make_profile
from tests.i18n.visible_text import untranslated

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9", "HTTP_HX_REQUEST": "true"}


def _test_in_chinese(client, profile):
    response = client.post(reverse("generation_endpoint_test", args=[profile.pk]), **CHINESE)
    assert response.status_code == 200
    words, _lang = untranslated(response, data=(profile.name, profile.model))
    return response.content.decode(), words


@pytest.mark.parametrize(("honours", "mode"), [("json_object", "json_object"), ("none", "无")])
def test_a_working_endpoint_reads_in_chinese(
    client,
    admin_user,
    start_simulator,
    db,
    honours,
    mode,
):
    sim = start_simulator(structured=honours, reasoning="think")
    profile = make_profile(sim.base_url, api_key_env="H15_UNSET_KEY")
    client.force_login(admin_user)
    html, words = _test_in_chinese(client, profile)
    assert 'data-test-result="ok"' in html
    assert "推理格式：<code>&lt;think&gt;</code> 标签内" in html
    assert f"结构化输出：{mode}" in html
    # The unset key variable is a note in Chinese, naming the variable as it is.
    assert "没有设置环境变量 H15_UNSET_KEY" in html
    assert words == [], words


def test_an_empty_reply_is_explained_in_chinese(client, admin_user, start_simulator, db):
    sim = start_simulator(rate_empty=1.0)
    profile = make_profile(sim.base_url)
    client.force_login(admin_user)
    html, words = _test_in_chinese(client, profile)
    assert 'data-test-result="failed"' in html
    # The simulator's empty reply is either nothing or a proxy's error page passed on as a 200.
    assert "服务器返回了空回复。" in html or "服务器返回的是错误页面，而不是模型的回复。" in html
    assert words == [], words
