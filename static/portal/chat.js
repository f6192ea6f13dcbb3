// The chat playground (templates/portal/_chat_playground.html). The conversation lives here and
// is sent whole each turn: POST JSON {model, messages, parameters} to data-stream-url, whose
// answer is server-sent events read from the fetch's body (EventSource cannot POST):
// {"text": delta} …, then {"done": true, "finish_reason", "usage"}, or {"error": message}.
// Stop aborts the fetch; the server then cancels the generation. The curl / Python snippets are
// rebuilt from the conversation and the parameters as they change (verticals.portal.chat.snippets
// writes the first ones: keep the two alike).
(function () {
  "use strict";

  const KEY_VARIABLE = "VERTICALS_API_KEY";
  const PARAMETERS = ["max_tokens", "temperature", "top_p", "stop", "seed"];
  const NEXT = "Your next message";

  // --- snippets ---------------------------------------------------------------------------

  // A value as Python's json.dumps writes it (", " and ": " between items): a Python literal
  // too, for strings, numbers, lists and dicts.
  function pyJson(value) {
    if (Array.isArray(value)) return "[" + value.map(pyJson).join(", ") + "]";
    if (value !== null && typeof value === "object") {
      return "{" + Object.keys(value).map((k) => JSON.stringify(k) + ": " + pyJson(value[k])).join(", ") + "}";
    }
    return JSON.stringify(value);
  }

  function snippets(apiBase, model, messages, parameters) {
    const body = Object.assign({ model: model, messages: messages }, parameters, { stream: true });
    const data = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
    const curl = "# " + KEY_VARIABLE + ": an API key with the predict scope (API keys page)\n" +
      "curl -N " + apiBase + "/chat/completions \\\n" +
      '  -H "Authorization: Bearer $' + KEY_VARIABLE + '" \\\n' +
      '  -H "Content-Type: application/json" \\\n' +
      "  -d '" + data + "'";
    const listed = messages.map((m) => "        " + pyJson(m) + ",\n").join("");
    const args = Object.keys(parameters).map((name) => "    " + name + "=" + pyJson(parameters[name]) + ",\n").join("");
    const python = "import os\n\n" +
      "from openai import OpenAI\n\n" +
      "# " + KEY_VARIABLE + ": an API key with the predict scope (API keys page)\n" +
      'client = OpenAI(base_url="' + apiBase + '", api_key=os.environ["' + KEY_VARIABLE + '"])\n' +
      "stream = client.chat.completions.create(\n" +
      "    model=" + JSON.stringify(model) + ",\n" +
      "    messages=[\n" + listed + "    ],\n" +
      args +
      "    stream=True,\n" +
      ")\n" +
      "for chunk in stream:\n" +
      "    if chunk.choices:\n" +
      '        print(chunk.choices[0].delta.content or "", end="", flush=True)\n' +
      "print()\n";
    return { curl: curl, python: python };
  }

  // --- server-sent events from a fetch ----------------------------------------------------

  // Calls onEvent with each event's JSON as the body arrives.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        let event;
        try {
          event = JSON.parse(data);
        } catch (error) {
          continue; // not ours (e.g. a keep-alive)
        }
        onEvent(event);
      }
    }
  }

  async function refusal(response) {
    const type = response.headers.get("Content-Type") || "";
    if (type.startsWith("application/json")) {
      try {
        const body = await response.json();
        if (body && body.error) return body.error;
      } catch (error) { /* fall through */ }
    }
    if (response.redirected && /\/login\//.test(response.url)) return "Your session has ended: sign in again.";
    if (response.status === 403) return "Refused (HTTP 403): your role may not try models, or the page is stale (reload it).";
    if (response.ok) return "The portal did not answer with a stream; reload the page.";
    return "The portal answered HTTP " + response.status + (response.statusText ? " " + response.statusText : "") + ".";
  }

  // --- the playground ---------------------------------------------------------------------

  function Playground(root) {
    this.root = root;
    this.form = root.querySelector("[data-chat-form]");
    this.input = root.querySelector("[data-chat-input]");
    this.log = root.querySelector("[data-chat-log]");
    this.empty = root.querySelector("[data-chat-empty]");
    this.picker = root.querySelector("[data-chat-model]");
    this.send = root.querySelector("[data-chat-send]");
    this.stop = root.querySelector("[data-chat-stop]");
    this.clear = root.querySelector("[data-chat-clear]");
    this.status = root.querySelector("[data-chat-status]");
    this.pageLink = root.querySelector("[data-chat-page]");
    this.messages = [];      // the conversation: {role: "user"|"assistant", content}
    this.controller = null;  // the running turn's AbortController
    this.bind();
    this.refreshSnippets();
  }

  Playground.prototype.param = function (name) {
    return this.root.querySelector('[data-param="' + name + '"]');
  };

  // {parameters, system, problem}: the filled-in parameters only, in the API's order.
  Playground.prototype.settings = function () {
    const parameters = {};
    let problem = "";
    PARAMETERS.forEach((name) => {
      const field = this.param(name);
      if (!field) return;
      const raw = field.value;
      if (name === "stop") {
        const stops = raw.split("\n").filter((line) => line.length > 0);
        if (stops.length > 4) problem = problem || "At most 4 stop strings.";
        if (stops.length) parameters.stop = stops;
        return;
      }
      if (raw.trim() === "") {
        if (field.validity && field.validity.badInput) problem = problem || name + " must be a number.";
        return;
      }
      const value = Number(raw);
      if (!Number.isFinite(value)) {
        problem = problem || name + " must be a number.";
        return;
      }
      if (field.validity && !field.validity.valid) problem = problem || name + ": " + field.validationMessage;
      parameters[name] = value;
    });
    const system = this.param("system").value.trim();
    return { parameters: parameters, system: system, problem: problem };
  };

  Playground.prototype.requestMessages = function (system, messages) {
    return (system ? [{ role: "system", content: system }] : []).concat(messages);
  };

  Playground.prototype.refreshSnippets = function () {
    const { parameters, system } = this.settings();
    const pending = this.input.value.trim();
    let turns = this.messages.slice();
    if (pending) turns.push({ role: "user", content: pending });
    // The request to come: a user turn last (the example to begin with).
    if (!turns.length) turns.push({ role: "user", content: this.root.dataset.example || "Hello!" });
    else if (turns[turns.length - 1].role !== "user") turns.push({ role: "user", content: NEXT });
    const texts = snippets(this.root.dataset.apiBase, this.picker.value, this.requestMessages(system, turns), parameters);
    this.root.querySelectorAll("[data-snippet]").forEach((pre) => {
      pre.textContent = texts[pre.dataset.snippet] || "";
    });
    this.root.querySelectorAll("[data-copy]").forEach((button) => {
      if (button.dataset.label) button.textContent = button.dataset.label;
    });
  };

  Playground.prototype.setState = function (state, text, isError) {
    this.root.dataset.state = state;
    const busy = state === "streaming";
    this.send.disabled = busy;
    this.clear.disabled = busy;
    this.stop.hidden = !busy;
    this.status.textContent = text || "";
    this.status.classList.toggle("error", !!isError);
    this.status.setAttribute("role", isError ? "alert" : "status");
  };

  Playground.prototype.bubble = function (role, content, note) {
    if (this.empty) this.empty.hidden = true;
    const item = document.createElement("li");
    item.className = "chat-message chat-" + role;
    item.dataset.role = role;
    const who = document.createElement("div");
    who.className = "chat-who";
    who.textContent = role === "user" ? "You" : "Assistant";
    if (note) {
      const small = document.createElement("span");
      small.className = "hint";
      small.textContent = " · " + note;
      who.appendChild(small);
    }
    const body = document.createElement("div");
    body.className = "chat-content";
    body.textContent = content;
    item.append(who, body);
    this.log.appendChild(item);
    this.log.scrollTop = this.log.scrollHeight;
    return item;
  };

  Playground.prototype.submit = async function () {
    if (this.controller) return;
    const content = this.input.value.trim();
    if (!content) {
      this.setState("idle", "Write a message first.", true);
      this.input.focus();
      return;
    }
    const { parameters, system, problem } = this.settings();
    if (problem) {
      this.setState("idle", problem, true);
      return;
    }
    const userTurn = { role: "user", content: content };
    const model = this.picker.value;
    const modelLabel = this.picker.selectedOptions.length ? this.picker.selectedOptions[0].textContent.split(" · ")[0] : model;
    this.messages.push(userTurn);
    const userItem = this.bubble("user", content);
    this.input.value = "";
    this.refreshSnippets();
    const answerItem = this.bubble("assistant", "", modelLabel);
    answerItem.classList.add("streaming");
    const answerBody = answerItem.querySelector(".chat-content");
    let text = "";
    let finished = null;
    let failure = "";
    this.controller = new AbortController();
    this.setState("streaming", "Generating…");
    const csrf = this.form.querySelector("input[name=csrfmiddlewaretoken]");
    try {
      const response = await fetch(this.root.dataset.streamUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream",
                   "X-CSRFToken": csrf ? csrf.value : "" },
        body: JSON.stringify({ model: model, messages: this.requestMessages(system, this.messages), parameters: parameters }),
        signal: this.controller.signal,
      });
      if (!response.ok || !(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
        failure = await refusal(response);
      } else {
        await readEvents(response, (event) => {
          if (typeof event.text === "string") {
            text += event.text;
            answerBody.textContent = text;
            this.log.scrollTop = this.log.scrollHeight;
          }
          if (event.error) failure = String(event.error);
          if (event.done) finished = event;
        });
        if (!finished && !failure) failure = "The stream ended before the answer did; try again.";
      }
    } catch (error) {
      if (error.name !== "AbortError") failure = "The connection failed: " + error.message;
    }
    const stopped = this.controller.signal.aborted && !finished;  // Stop pressed as the last event came: it finished
    this.controller = null;
    answerItem.classList.remove("streaming");
    if (text) {
      this.messages.push({ role: "assistant", content: text });
    } else {
      answerItem.remove();
      if (failure) { // nothing came: give the message back, to resend once fixed
        this.messages.pop();
        userItem.remove();
        this.input.value = content;
        if (this.empty && !this.messages.length) this.empty.hidden = false;
      }
    }
    if (failure) {
      if (text) answerItem.classList.add("chat-cut");
      this.setState("error", failure, true);
    } else if (stopped) {
      if (text) answerItem.classList.add("chat-cut");
      this.setState("stopped", "Stopped." + (text ? " The partial answer stays in the conversation." : ""));
    } else {
      const usage = finished.usage || {};
      const why = finished.finish_reason === "length" ? " · max_tokens reached" : "";
      this.setState("done", (finished.finish_reason || "done") + why + " · " + (usage.prompt_tokens || 0) + " prompt + " +
                    (usage.completion_tokens || 0) + " completion tokens");
    }
    this.refreshSnippets();
    this.input.focus();
  };

  Playground.prototype.bind = function () {
    this.root.querySelectorAll("[data-copy]").forEach((button) => {
      button.dataset.label = button.textContent;
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.stop.addEventListener("click", () => {
      if (this.controller) this.controller.abort();
    });
    this.clear.addEventListener("click", () => {
      if (this.controller) return;
      this.messages = [];
      this.log.querySelectorAll(".chat-message").forEach((item) => item.remove());
      if (this.empty) this.empty.hidden = false;
      this.setState("idle", "");
      this.refreshSnippets();
    });
    this.picker.addEventListener("change", () => {
      if (this.pageLink) {
        const url = new URL(this.pageLink.href, window.location.href);
        url.searchParams.set("model", this.picker.value);
        this.pageLink.href = url.pathname + url.search;
      }
      this.refreshSnippets();
    });
    this.root.addEventListener("input", (event) => {
      if (event.target.matches("[data-param], [data-chat-input]")) this.refreshSnippets();
    });
  };

  function start() {
    document.querySelectorAll("[data-chat]").forEach((root) => {
      root.chat = new Playground(root);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
