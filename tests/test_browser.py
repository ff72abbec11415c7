"""The example app's chat page, used in real headless Chromium.

Each test runs ``python -m example_app`` and drives the page at ``/``
through Playwright with the system's Chromium (``playwright install``
cannot download browsers here). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from .conftest import remote, spawn_example
from .test_docs_samples import samples

playwright_api = pytest.importorskip("playwright.async_api")
Browser = playwright_api.Browser
Page = playwright_api.Page
expect = playwright_api.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
SECRET = "browser-tests-secret-browser-tests-secret"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# The tests where layout matters run at both sizes.
both_sizes = pytest.mark.parametrize(
    "viewport", [DESKTOP, PHONE], ids=["1280", "390"]
)

pytestmark = [
    pytest.mark.slow,  # Chromium and the example app in a subprocess
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Chromium (apt chromium)"
    ),
    pytest.mark.timeout(120),
]


class ExampleServer:
    """The example app in a subprocess that can be stopped and restarted."""

    def __init__(self, log: Path, *args: str, **env: str) -> None:
        self.log, self.args, self.env = log, args, env
        self.port = 0
        self.secret = SECRET  # change it before a restart: tokens go bad
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.port, self.proc = spawn_example(
            self.log,
            *self.args,
            port=self.port or None,
            SANIC_CHAT_JWT_SECRET=self.secret,
            **self.env,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExampleServer]:
    srv = ExampleServer(tmp_path / "example.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, args=ARGS
        )
        yield launched
        await launched.close()


class ChatPage:
    """One person using the chat page in their own browser context."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.phone = page.viewport_size["width"] < 720
        self.errors: list[str] = []
        self.logs: list[str] = []
        self.sent: list[dict[str, object]] = []  # frames the page sent
        self.refused: list[str] = []  # error frames the page received
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("websocket", self._websocket)

    def _websocket(self, ws: object) -> None:
        def sent(payload: str | bytes) -> None:
            if isinstance(payload, str) and payload.startswith("{"):
                self.sent.append(json.loads(payload))

        def received(payload: str | bytes) -> None:
            if isinstance(payload, str) and '"type":"error"' in payload:
                self.refused.append(payload)

        ws.on("framesent", sent)  # type: ignore[attr-defined]
        ws.on("framereceived", received)  # type: ignore[attr-defined]

    def _console(self, message: object) -> None:
        text = message.text  # type: ignore[attr-defined]
        self.logs.append(text)
        url = message.location.get("url", "")  # type: ignore[attr-defined]
        if url.endswith("/session") and "status of 401" in text:
            return  # the page asks for a session; without one: a 401
        if message.type == "error":  # type: ignore[attr-defined]
            self.errors.append(text)

    @classmethod
    async def open(
        cls,
        browser: Browser,
        url: str,
        name: str | None = None,
        viewport: dict[str, int] = DESKTOP,
    ) -> ChatPage:
        context = await browser.new_context(viewport=viewport)
        chat = cls(await context.new_page())
        await chat.page.goto(url)
        if name is not None:
            await chat.sign_in(name)
        return chat

    async def reopen(self) -> ChatPage:
        """The same person in a new tab of the same browser: storage and
        the login cookie are shared, so the session is restored."""
        chat = type(self)(await self.page.context.new_page())
        await chat.page.goto(self.page.url)
        await chat.online()
        return chat

    @property
    def status(self) -> object:
        return self.page.locator("#status")

    @property
    def typing(self) -> object:
        return self.page.locator("#typing")

    def nav(self, kind: str, text: str) -> object:
        """A room (``kind="room"``) or conversation (``"dm"``) button."""
        where = "#rooms" if kind == "room" else "#dms"
        return self.page.locator(f"{where} button.{kind}", has_text=text)

    def message(self, text: str) -> object:
        """The list item of the message with this text."""
        return self.page.locator("#messages li:not(.notice)").filter(
            has=self.page.locator(".text", has_text=text)
        )

    async def open_panel(self, which: str) -> None:
        """On a phone, open the ``rooms`` or ``people`` drawer."""
        if not self.phone:
            return
        toggle = self.page.locator(f"#{which}-toggle")
        if await toggle.get_attribute("aria-expanded") != "true":
            await toggle.click()
        await expect(self.page.locator(f"#{which}-panel")).to_be_visible()

    async def join(self, room: str) -> None:
        await self.open_panel("rooms")
        await self.page.fill("#new-room", room)
        await self.page.press("#new-room", "Enter")
        await expect(self.page.locator("#title")).to_have_text(f"# {room}")

    async def view(self, room: str) -> None:
        await self.open_panel("rooms")
        await self.nav("room", f"# {room}").click()
        await expect(self.page.locator("#title")).to_have_text(f"# {room}")

    async def open_dm(self, name: str) -> None:
        """Click ``name`` in Here now: the direct messages with them."""
        await self.open_panel("people")
        person = self.page.locator("#presence button.person", has_text=name)
        await person.click()
        await expect(self.page.locator("#title")).to_have_text(
            f"Direct messages with {name}"
        )

    async def sent_frame(
        self, match: Callable[[dict[str, object]], bool]
    ) -> dict[str, object]:
        """Wait until the page has sent a frame that ``match`` accepts."""
        async with asyncio.timeout(5):
            while True:
                for frame in self.sent:
                    if match(frame):
                        return frame
                await asyncio.sleep(0.05)

    async def sign_in(self, name: str) -> None:
        await self.page.fill("#name", name)
        await self.page.click("#login button")
        await self.online()

    async def online(self) -> None:
        await expect(self.page.locator("#login")).to_be_hidden()
        await expect(self.status).to_have_attribute("data-state", "online")
        await expect(self.page.locator("#send")).to_be_enabled()

    async def say(self, text: str) -> None:
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")

    def messages(self) -> object:
        return self.page.locator("#messages li:not(.notice) .text")

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        name += "-390" if self.phone else ""
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@both_sizes
async def test_two_people_chat_and_a_late_joiner_sees_history(
    browser: Browser, server: ExampleServer, viewport: dict[str, int]
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice", viewport)
    bob = await ChatPage.open(browser, server.url, "Bob", viewport)
    await alice.say("Hi Bob!")
    await expect(bob.messages()).to_have_text(["Hi Bob!"])
    await bob.say("Hello Alice, nice to see you.")
    await expect(alice.messages()).to_have_text(
        ["Hi Bob!", "Hello Alice, nice to see you."]
    )
    # Own messages are told apart, and every message names its sender.
    own = alice.page.locator("#messages li.mine .text")
    await expect(own).to_have_text(["Hi Bob!"])
    await expect(alice.page.locator("#messages li .who")).to_have_text(
        ["Alice", "Bob"]
    )
    await expect(alice.page.locator("#presence li")).to_contain_text(
        ["Alice", "Bob"]
    )
    carol = await ChatPage.open(browser, server.url, "Carol", viewport)
    await expect(carol.messages()).to_have_text(
        ["Hi Bob!", "Hello Alice, nice to see you."]
    )
    await carol.say("Sorry I'm late")
    await expect(alice.messages()).to_have_count(3)
    await alice.shot("chat")
    for person in (alice, bob, carol):
        assert person.errors == []


async def test_offline_then_online_shows_every_missed_message_once(
    browser: Browser, server: ExampleServer
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice")
    bob = await ChatPage.open(browser, server.url, "Bob")
    await alice.say("before")
    await expect(bob.messages()).to_have_text(["before"])
    await bob.page.context.set_offline(True)
    await expect(bob.status).to_have_attribute("data-state", "offline")
    missed = [f"missed {i}" for i in range(1, 8)]
    for text in missed:
        await alice.say(text)
    await expect(alice.messages()).to_have_count(1 + len(missed))
    await bob.shot("offline")
    await bob.page.context.set_offline(False)
    await expect(bob.status).to_have_attribute("data-state", "online")
    await expect(bob.messages()).to_have_text(["before", *missed])
    await bob.say("back")
    await expect(alice.messages()).to_have_text(["before", *missed, "back"])
    assert alice.errors == bob.errors == []


async def test_message_text_is_shown_as_text_and_never_runs(
    browser: Browser, server: ExampleServer
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice")
    bob = await ChatPage.open(browser, server.url, "Bob")
    payloads = [
        '<img src=x onerror="window.__xss = 1">',
        "<script>window.__xss = 2</script>",
        "**bold** & <b>tags</b>",
    ]
    for text in payloads:
        await alice.say(text)
    await expect(bob.messages()).to_have_text(payloads)
    assert await bob.page.evaluate("window.__xss") is None
    assert await bob.page.locator("#messages img, #messages b").count() == 0
    assert alice.errors == bob.errors == []


@both_sizes
async def test_a_server_outage_is_shown_and_sends_wait_for_it(
    browser: Browser, server: ExampleServer, viewport: dict[str, int]
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice", viewport)
    bob = await ChatPage.open(browser, server.url, "Bob", viewport)
    await alice.say("before the outage")
    await expect(bob.messages()).to_have_text(["before the outage"])
    server.stop()
    await expect(alice.status).to_have_attribute("data-state", "offline")
    await expect(alice.page.locator("#notice")).to_have_text(
        re.compile("restarting|Cannot reach the chat server")
    )
    # A message written meanwhile waits, shown as pending.
    await alice.say("written during the outage")
    pending = alice.page.locator("#messages li.pending")
    await expect(pending.locator(".text")).to_have_text(
        ["written during the outage"]
    )
    await expect(pending.locator(".sending")).to_have_text(
        "waiting for the connection…"
    )
    await expect(alice.status).to_contain_text("1 unsent")
    await alice.shot("outage")
    server.start()  # same port and JWT secret; the in-memory history is gone
    for person in (alice, bob):
        await expect(person.status).to_have_attribute(
            "data-state", "online", timeout=20_000
        )
    await expect(alice.page.locator("#notice")).to_have_text("")
    # Delivered once, to both; the pending item became the message.
    expected = ["before the outage", "written during the outage"]
    await expect(alice.messages()).to_have_text(expected)
    await expect(bob.messages()).to_have_text(expected)
    await expect(pending).to_have_count(0)
    await expect(alice.status).to_have_text("online")
    await alice.say("after the outage")
    await expect(bob.messages()).to_have_text([*expected, "after the outage"])
    await expect(alice.messages()).to_have_text(
        [*expected, "after the outage"]
    )
    # While the server was down the browser reported refused connections;
    # nothing else may have gone wrong.
    for person in (alice, bob):
        unexpected = [
            e for e in person.errors if "ERR_CONNECTION_REFUSED" not in e
        ]
        print("ERRS", "\n".join(unexpected))
    assert unexpected == [], unexpected


async def test_a_refused_upgrade_is_explained(
    browser: Browser, tmp_path: Path
) -> None:
    srv = ExampleServer(
        tmp_path / "example.log",
        SANIC_CHAT_ALLOWED_ORIGINS="https://somewhere-else.example",
    )
    srv.start()
    try:
        page = await ChatPage.open(browser, srv.url)
        await page.page.fill("#name", "Mallory")
        await page.page.click("#login button")
        await expect(page.page.locator("#notice")).to_contain_text(
            "refused the connection"
        )
        await expect(page.status).not_to_have_attribute("data-state", "online")
        await page.shot("refused")
    finally:
        srv.stop()


async def test_the_recipe_console_client_works_with_guests(
    browser: Browser, tmp_path: Path
) -> None:
    srv = ExampleServer(tmp_path / "example.log", "--allow-anonymous")
    srv.start()
    try:
        page = await ChatPage.open(browser, srv.url)
        # The cookbook's console snippet, waiting for `open` as a person
        # typing it line by line does.
        received = await page.page.evaluate(
            """() => new Promise((resolve) => {
                let ws = new WebSocket(`ws://${location.host}/ws`);
                ws.onmessage = e => {
                    console.log(e.data);
                    if (e.data.includes("Hello from JS!")) resolve(e.data);
                };
                ws.onopen = () => ws.send("Hello from JS!");
            })"""
        )
        assert '"type":"message"' in received
        assert any("Hello from JS!" in line for line in page.logs)
        assert page.errors == []
    finally:
        srv.stop()


async def test_the_readme_console_snippets_run_typed_line_by_line(
    browser: Browser, tmp_path: Path
) -> None:
    lines = [
        line
        for where, code in samples("javascript")
        if where.startswith("README.md")
        for line in code.splitlines()
    ]
    assert any('ws.send("Hello from JS!")' in line for line in lines)
    srv = ExampleServer(tmp_path / "example.log", "--allow-anonymous")
    srv.start()
    try:
        page = await ChatPage.open(browser, srv.url)
        for line in lines:
            # As typed into the console: each line once the socket is open.
            await page.page.add_script_tag(
                content=line.replace("localhost:8000", f"127.0.0.1:{srv.port}")
            )
            await page.page.wait_for_function("ws.readyState === 1")
        for needle in ("Hello from JS!", '"text":"hi"', '"ref":"1"'):
            await _logged(page, needle)
        assert page.errors == []
    finally:
        srv.stop()


async def _logged(page: ChatPage, needle: str) -> None:
    """Wait until the page's console has shown ``needle``."""
    async with asyncio.timeout(5):
        while not any(needle in line for line in page.logs):
            await asyncio.sleep(0.05)


async def test_guests_are_marked_so_they_cannot_pass_for_a_user(
    browser: Browser, tmp_path: Path
) -> None:
    srv = ExampleServer(tmp_path / "example.log", "--allow-anonymous")
    srv.start()
    try:
        bob = await ChatPage.open(browser, srv.url, "Bob")
        await bob.say("hello")
        await expect(bob.messages()).to_have_text(["hello"])
        # A guest takes the signed-in user's name.
        async with remote(srv.port).client(name="Bob") as guest:
            await guest.say("I am Bob too")
            await expect(bob.messages()).to_have_text(
                ["hello", "I am Bob too"]
            )
            page = bob.page
            await expect(page.locator("#messages li .who")).to_have_text(
                ["Bob", "Bob"]
            )
            badges = page.locator("#messages li:not(.notice) .badge")
            await expect(badges).to_have_text(["guest"])
            await expect(
                page.locator("#messages li:has(.badge) .text")
            ).to_have_text(["I am Bob too"])
            await expect(page.locator("#messages li.notice")).to_contain_text(
                ["Bob (guest) joined"]
            )
            await expect(page.locator("#presence li")).to_have_count(2)
            await expect(page.locator("#presence li .badge")).to_have_text(
                ["guest"]
            )
            await bob.shot("guest-badge")
        assert bob.errors == []
    finally:
        srv.stop()


# Issue 14. Server features each test needs: direct messages, typing and
# read receipts come from the `people` work, edit and delete from the
# `messages` work.


@both_sizes
async def test_direct_messages_reach_only_the_two_people(
    browser: Browser, server: ExampleServer, viewport: dict[str, int]
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice", viewport)
    bob = await ChatPage.open(browser, server.url, "Bob", viewport)
    carol = await ChatPage.open(browser, server.url, "Carol", viewport)
    await alice.say("hello everyone")
    await expect(carol.messages()).to_have_text(["hello everyone"])
    await alice.open_dm("Bob")
    await expect(alice.messages()).to_have_count(0)
    payload = '<img src=x onerror="window.__xss = 1">'
    await alice.say("psst, Bob")
    await alice.say(payload)
    await expect(alice.messages()).to_have_text(["psst, Bob", payload])
    sent = await alice.sent_frame(lambda f: f.get("text") == "psst, Bob")
    assert sent["type"] == "message" and "room" not in sent
    assert sent["to"] == "user:bob"
    # Bob stays in the lobby; the conversation appears, its messages unread.
    dm = bob.nav("dm", "Alice")
    await expect(dm.locator(".unread")).to_have_text("2")
    await expect(bob.messages()).to_have_text(["hello everyone"])
    await bob.open_panel("rooms")
    await dm.click()
    await expect(bob.messages()).to_have_text(["psst, Bob", payload])
    await expect(dm.locator(".unread")).to_have_text("")
    await bob.say("hi Alice")
    await expect(alice.messages()).to_have_text(
        ["psst, Bob", payload, "hi Alice"]
    )
    await expect(alice.page.locator("#messages li.mine .text")).to_have_text(
        ["psst, Bob", payload]
    )
    # Carol, in the same room, got none of it.
    await expect(carol.page.locator("#dms li")).to_have_count(0)
    await expect(carol.messages()).to_have_text(["hello everyone"])
    assert await bob.page.evaluate("window.__xss") is None
    await bob.shot("direct-messages")
    # Offline, Bob misses a direct message; reconnecting recovers it once.
    await bob.page.context.set_offline(True)
    await expect(bob.status).to_have_attribute("data-state", "offline")
    await alice.say("while you were away")
    await expect(alice.messages()).to_have_count(4)
    await bob.page.context.set_offline(False)
    await expect(bob.status).to_have_attribute("data-state", "online")
    await expect(bob.messages()).to_have_text(
        ["psst, Bob", payload, "hi Alice", "while you were away"]
    )
    for person in (alice, bob, carol):
        assert person.errors == person.refused == []


async def test_typing_shows_for_a_while_or_until_the_next_message(
    browser: Browser, server: ExampleServer
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice")
    bob = await ChatPage.open(browser, server.url, "Bob")
    text = alice.page.locator("#text")
    await text.press_sequentially("hello Bob", delay=30)
    await expect(bob.typing).to_have_text("Alice is typing...")
    await expect(alice.typing).to_have_text("")  # not told of oneself
    await bob.shot("typing")
    await text.press("Enter")
    await expect(bob.messages()).to_have_text(["hello Bob"])
    await expect(bob.typing).to_have_text("")  # the message ends it
    # Typing without sending (slowly: one typing per 2.5 s at most): shown
    # for about 5 s, then gone.
    await text.press_sequentially("hmm, let me think", delay=200)
    await expect(bob.typing).to_have_text("Alice is typing...")
    await expect(bob.typing).to_have_text("", timeout=8_000)
    # Three seconds of steady typing send one or two typing frames.
    before = len([f for f in alice.sent if f["type"] == "typing"])
    await text.press_sequentially("x" * 60, delay=50)
    typed = [f for f in alice.sent if f["type"] == "typing"][before:]
    assert 1 <= len(typed) <= 2, typed
    assert typed[0] == {"type": "typing", "room": "lobby"}
    await text.fill("")
    # In a direct message, only that conversation shows it.
    await bob.open_dm("Alice")
    await alice.open_dm("Bob")
    await text.press_sequentially("secret", delay=30)
    await expect(bob.typing).to_have_text("Alice is typing...")
    dm_typing = [f for f in alice.sent if f["type"] == "typing"][-1]
    assert dm_typing.keys() == {"type", "to"}
    await bob.view("lobby")
    await expect(bob.typing).to_have_text("")
    for person in (alice, bob):
        assert person.errors == person.refused == []


@both_sizes
async def test_unread_counts_per_room_live_and_after_a_reload(
    browser: Browser, server: ExampleServer, viewport: dict[str, int]
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice", viewport)
    bob = await ChatPage.open(browser, server.url, "Bob", viewport)
    await alice.join("dev")
    await bob.join("dev")
    await alice.view("lobby")
    dev = alice.nav("room", "# dev").locator(".unread")
    await bob.say("one")
    await bob.say("two")
    await expect(dev).to_have_text("2")
    await alice.shot("unread")
    await alice.view("dev")
    await expect(alice.messages()).to_have_text(["one", "two"])
    await expect(dev).to_have_text("")
    last = await alice.message("two").get_attribute("data-id")
    read = await alice.sent_frame(
        lambda f: (
            (f["type"], f.get("room"), f.get("id")) == ("read", "dev", last)
        )
    )
    assert set(read) == {"type", "room", "id", "ref"}  # answered by ref
    await alice.view("lobby")
    # Alice closes the tab; what is written meanwhile is unread when she
    # comes back (the page remembers her rooms, the server her position).
    await alice.page.close()
    for text in ("three", "four", "five"):
        await bob.say(text)
    await expect(bob.messages()).to_have_count(5)
    again = await alice.reopen()
    dev = again.nav("room", "# dev").locator(".unread")
    await expect(dev).to_have_text("3")
    await expect(again.nav("room", "# lobby").locator(".unread")).to_have_text(
        ""
    )
    await again.view("dev")
    await expect(again.messages()).to_have_text(
        ["one", "two", "three", "four", "five"]
    )
    await expect(dev).to_have_text("")
    for person in (alice, again, bob):
        assert person.errors == person.refused == []


async def test_own_messages_can_be_edited_and_deleted(
    browser: Browser, server: ExampleServer
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice")
    bob = await ChatPage.open(browser, server.url, "Bob")
    carol = await ChatPage.open(browser, server.url, "Carol")
    await alice.say("helo")
    await alice.say("oops")
    # Bob answers what he has seen: which of two crossing messages a
    # page lists first is not what this test is about.
    await expect(bob.messages()).to_have_text(["helo", "oops"])
    await bob.say("mine")
    await expect(carol.messages()).to_have_text(["helo", "oops", "mine"])
    # Only one's own messages offer Edit and Delete.
    await expect(alice.page.locator("#messages .edit")).to_have_count(2)
    await expect(alice.message("mine").locator(".edit")).to_have_count(0)
    await carol.page.context.set_offline(True)
    await expect(carol.status).to_have_attribute("data-state", "offline")
    await alice.message("helo").hover()
    await alice.message("helo").locator(".edit").click()
    await expect(alice.page.locator("#editing")).to_be_visible()
    await expect(alice.page.locator("#text")).to_have_value("helo")
    await alice.page.fill("#text", "hello")
    await alice.page.press("#text", "Enter")
    await expect(bob.messages()).to_have_text(["hello", "oops", "mine"])
    await expect(bob.message("hello").locator(".edited")).to_have_text(
        "(edited)"
    )
    await alice.message("oops").locator(".delete").click()
    await expect(bob.messages()).to_have_text(
        ["hello", "message deleted", "mine"]
    )
    await expect(bob.page.locator("#messages li.gone")).to_have_count(1)
    await expect(alice.page.locator("#messages .edit")).to_have_count(1)
    await bob.shot("edited")
    # Someone else's message: the server refuses, the page says so.
    target = await bob.message("hello").get_attribute("data-id")
    # (Through the client the page exposes to the console as `chat`: the
    # page offers no Edit on others' messages.)
    refused = await bob.page.evaluate(
        "(id) => chat.edit('lobby', id, 'pwned').then(() => 'edited',"
        " (err) => err.code)",
        target,
    )
    assert refused == "forbidden"
    await expect(alice.messages()).to_have_text(
        ["hello", "message deleted", "mine"]
    )
    # Carol was offline throughout: recovering shows the current state.
    await carol.page.context.set_offline(False)
    await expect(carol.status).to_have_attribute("data-state", "online")
    await expect(carol.messages()).to_have_text(
        ["hello", "message deleted", "mine"]
    )
    await expect(carol.message("hello").locator(".edited")).to_have_count(1)
    # So does history, for someone who comes later.
    dave = await ChatPage.open(browser, server.url, "Dave")
    await expect(dave.messages()).to_have_text(
        ["hello", "message deleted", "mine"]
    )
    await expect(dave.page.locator("#messages li.gone")).to_have_count(1)
    # An edit is text like any other.
    payload = '<img src=x onerror="window.__xss = 1">'
    await alice.message("hello").locator(".edit").click()
    await alice.page.fill("#text", payload)
    await alice.page.press("#text", "Enter")
    await expect(dave.messages()).to_have_text(
        [payload, "message deleted", "mine"]
    )
    assert await dave.page.evaluate("window.__xss") is None
    assert await dave.page.locator("#messages img").count() == 0
    assert [json.loads(f)["code"] for f in bob.refused] == ["forbidden"]
    for person in (alice, carol, dave):
        assert person.errors == person.refused == []
    assert bob.errors == []


async def test_direct_messages_typing_and_unread_counts(
    browser: Browser, server: ExampleServer
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice")
    bob = await ChatPage.open(browser, server.url, "Bob")
    # A DM: click a name in "Here now".
    await alice.open_dm("Bob")
    await expect(alice.page.locator("#dms button.dm")).to_have_text(["Bob"])
    await alice.page.locator("#text").press_sequentially("psst")
    bob_dm = bob.nav("dm", "Alice")
    await bob.page.locator("#text").focus()
    await alice.page.press("#text", "Enter")
    await expect(bob_dm.locator(".unread")).to_have_text("1")
    await expect(alice.messages()).to_have_text(["psst"])
    await bob_dm.click()
    await expect(bob.messages()).to_have_text(["psst"])
    await expect(bob_dm.locator(".unread")).to_have_text("")
    # Typing shows on the other side, in that conversation, until the
    # message comes.
    await bob.page.locator("#text").press_sequentially("hey")
    await expect(alice.typing).to_have_text("Bob is typing...")
    await bob.page.press("#text", "Enter")
    await expect(alice.typing).to_have_text("")
    await expect(alice.messages()).to_have_text(["psst", "hey"])
    # Unread counts per room: a lobby message while alice reads the DM.
    await bob.view("lobby")
    await bob.say("in the lobby")
    await expect(alice.nav("room", "# lobby").locator(".unread")).to_have_text(
        "1"
    )
    await alice.shot("direct-messages-unread")
    for person in (alice, bob):
        assert person.errors == person.refused == []


# Issue 15: the page on the JavaScript client.


async def _no_horizontal_scroll(page: Page) -> None:
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0, f"{overflow}px of horizontal overflow"


async def test_a_reload_restores_the_session_and_sign_out_ends_it(
    browser: Browser, server: ExampleServer
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice")
    await alice.join("dev")
    await alice.say("still here?")
    await expect(alice.messages()).to_have_text(["still here?"])
    await alice.page.reload()
    # No sign-in form: the HttpOnly cookie bought a fresh token.
    await alice.online()
    await expect(alice.page.locator("#me")).to_have_text("as Alice")
    await expect(alice.page.locator("#title")).to_have_text("# lobby")
    await alice.view("dev")
    await expect(alice.messages()).to_have_text(["still here?"])
    await alice.page.click("#logout")
    await expect(alice.page.locator("#login")).to_be_visible()
    await expect(alice.page.locator("#app")).to_be_hidden()
    await alice.page.reload()
    await expect(alice.page.locator("#login")).to_be_visible()
    status = await alice.page.evaluate(
        "() => fetch('/session').then((r) => r.status)"
    )
    assert status == 401
    # Signing in again works, and the rooms are remembered per name.
    await alice.sign_in("Alice")
    await expect(alice.nav("room", "# dev")).to_have_count(1)
    assert alice.errors == alice.refused == []


async def test_a_refused_send_shows_its_error_to_retry_or_discard(
    browser: Browser, tmp_path: Path
) -> None:
    srv = ExampleServer(
        tmp_path / "example.log", SANIC_CHAT_MAX_TEXT_LENGTH="20"
    )
    srv.start()
    try:
        alice = await ChatPage.open(browser, srv.url, "Alice")
        bob = await ChatPage.open(browser, srv.url, "Bob")
        long = "this is far too long for the server"
        await alice.say(long)
        failed = alice.page.locator("#messages li.failed")
        await expect(failed.locator(".text")).to_have_text([long])
        await expect(failed.locator(".problem")).to_contain_text("Not sent:")
        await alice.shot("refused-send")
        await failed.locator(".retry").click()  # refused again
        await expect(failed.locator(".problem")).to_contain_text("Not sent:")
        await failed.locator(".discard").click()
        await expect(failed).to_have_count(0)
        await alice.say("short one")
        await expect(bob.messages()).to_have_text(["short one"])
        await expect(alice.messages()).to_have_text(["short one"])
        await expect(alice.status).to_have_text("online")
        assert len(alice.refused) == 2, alice.refused
        assert alice.errors == bob.errors == []
    finally:
        srv.stop()


async def test_on_a_phone_rooms_and_people_open_as_panels(
    browser: Browser, server: ExampleServer
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice", PHONE)
    bob = await ChatPage.open(browser, server.url, "Bob")
    page = alice.page
    rooms, people = page.locator("#rooms-panel"), page.locator("#people-panel")
    await expect(rooms).to_be_hidden()
    await expect(people).to_be_hidden()
    await expect(page.locator("#text")).to_be_visible()
    await expect(alice.status).to_be_visible()
    await _no_horizontal_scroll(page)
    # The rooms panel: open, join a room (which closes it), open again,
    # close with Escape.
    await page.click("#rooms-toggle")
    await expect(rooms).to_be_visible()
    await expect(page.locator("#rooms-toggle")).to_have_attribute(
        "aria-expanded", "true"
    )
    await _no_horizontal_scroll(page)
    await alice.shot("rooms-panel")
    await page.fill("#new-room", "dev")
    await page.press("#new-room", "Enter")
    await expect(page.locator("#title")).to_have_text("# dev")
    await expect(rooms).to_be_hidden()
    await page.click("#rooms-toggle")
    await expect(alice.nav("room", "# dev")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(rooms).to_be_hidden()
    await page.click("#people-toggle")
    await page.click("#people-panel .close")
    await expect(people).to_be_hidden()
    # Unread messages elsewhere show on the closed panel's button.
    await bob.say("in the lobby")
    await expect(page.locator("#rooms-toggle")).to_have_text("Rooms (1)")
    await alice.view("lobby")
    await expect(alice.messages()).to_have_text(["in the lobby"])
    await expect(page.locator("#rooms-toggle")).to_have_text("Rooms")
    # The people panel: who is here; a name opens a direct message.
    await page.click("#people-toggle")
    await expect(people).to_be_visible()
    await expect(page.locator("#presence li")).to_contain_text(
        ["Alice", "Bob"]
    )
    await alice.shot("people-panel")
    await page.locator("#presence button.person", has_text="Bob").click()
    await expect(people).to_be_hidden()
    await expect(page.locator("#title")).to_have_text(
        "Direct messages with Bob"
    )
    await alice.say("psst " + "x" * 300)  # one long word: no sideways scroll
    await expect(bob.nav("dm", "Alice").locator(".unread")).to_have_text("1")
    await _no_horizontal_scroll(page)
    await alice.view("lobby")
    await alice.say("back in the lobby")
    await expect(bob.messages()).to_have_text(
        ["in the lobby", "back in the lobby"]
    )
    await _no_horizontal_scroll(page)
    await alice.shot("chat")
    assert alice.errors == bob.errors == []
    assert alice.refused == bob.refused == []


async def test_a_session_the_server_no_longer_accepts_asks_to_sign_in(
    browser: Browser, server: ExampleServer
) -> None:
    alice = await ChatPage.open(browser, server.url, "Alice")
    server.stop()
    server.secret = "a-new-secret-a-new-secret-a-new-secret-xx"
    server.start()  # the cookie's token no longer verifies
    await expect(alice.page.locator("#login")).to_be_visible(timeout=20_000)
    await expect(alice.page.locator("#notice")).to_contain_text(
        "sign in again"
    )
    await expect(alice.status).to_have_attribute("data-state", "unauthorized")
    await alice.sign_in("Alice")
    await alice.say("back")
    await expect(alice.messages()).to_have_text(["back"])
    # The browser reports the refused connections and handshakes (401;
    # the client's probe of why: 426); nothing else may have gone wrong.
    expected = re.compile(
        "ERR_CONNECTION_REFUSED|status of 401|status of 426"
        "|HTTP Authentication failed"
    )
    unexpected = [e for e in alice.errors if not expected.search(e)]
    assert unexpected == [], unexpected
