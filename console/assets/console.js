// Concord console: polls the coordination status (JSON) and renders it.
// Every value from the status is written with textContent (through el and
// text below), never parsed as markup. No library, no build step.
(function () {
  "use strict";

  var body = document.body;
  var statusPath = body.getAttribute("data-status") || "/concord/status";
  var refreshMs = Math.max(Number(body.getAttribute("data-refresh-ms")) || 2000, 500);
  var maxBackoffMs = 30000;
  var readTimeoutMs = 10000;

  var last = null; // {data, at}: the last good status and when it was read
  var failure = null; // {reason, since}: why the latest read failed
  var failures = 0; // consecutive failed reads
  var nextAt = 0; // when the next read starts

  // el builds an element. props sets properties or attributes (never
  // event handlers or markup); children are nodes or text.
  function el(tag, props, children) {
    var e = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) {
        var v = props[k];
        if (v === undefined || v === null) return;
        if (k === "className") e.className = v;
        else if (k === "id") e.id = v;
        else e.setAttribute(k, String(v));
      });
    }
    append(e, children);
    return e;
  }

  function append(e, children) {
    if (children === undefined || children === null) return;
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (c) {
      if (c === undefined || c === null || c === false) return;
      if (Array.isArray(c)) append(e, c);
      else if (c instanceof Node) e.appendChild(c);
      else e.appendChild(document.createTextNode(String(c)));
    });
  }

  function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
  }

  function text(id, s) {
    document.getElementById(id).textContent = s;
  }

  function has(o, k) {
    return o !== null && typeof o === "object" && Object.prototype.hasOwnProperty.call(o, k) && o[k] !== null;
  }

  function arr(v) {
    return Array.isArray(v) ? v : [];
  }

  function str(v) {
    return v === undefined || v === null ? "" : String(v);
  }

  function num(v) {
    var n = Number(v);
    return isFinite(n) ? n : 0;
  }

  function fmtInt(v) {
    return Math.round(num(v)).toLocaleString("en-US");
  }

  // fmtMs writes a duration in milliseconds the way an operator reads it.
  function fmtMs(ms) {
    ms = num(ms);
    if (ms < 0) ms = 0;
    if (ms < 1000) return Math.round(ms) + " ms";
    var s = ms / 1000;
    if (s < 60) return (s < 10 ? Math.round(s * 10) / 10 : Math.round(s)) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + String(Math.floor(s % 60)).padStart(2, "0") + " s";
    var hr = Math.floor(m / 60);
    if (hr < 48) return hr + " h " + String(m % 60).padStart(2, "0") + " min";
    return Math.floor(hr / 24) + " d " + (hr % 24) + " h";
  }

  // fmtAge writes how long ago an RFC 3339 time was, or "" when it is not
  // one (Go writes a zero time as 0001-01-01).
  function fmtAge(t) {
    var when = Date.parse(str(t));
    if (!isFinite(when) || when <= 0) return "";
    return fmtMs(Date.now() - when) + " ago";
  }

  function fmtClock(ms) {
    var d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) {
      return String(n).padStart(2, "0");
    }).join(":");
  }

  // plural writes a count with its noun: "1 service", "2 services".
  function plural(n, noun) {
    return fmtInt(n) + " " + noun + (n === 1 ? "" : "s");
  }

  function badge(label, kind) {
    return el("span", { className: "badge " + (kind || "") }, label);
  }

  var peerKinds = { current: "ok", catching_up: "warn", offline: "bad", unknown: "" };
  var breakerKinds = { closed: "ok", half_open: "warn", open: "bad" };
  var txKinds = { trying: "", confirming: "warn", cancelling: "warn", confirmed: "ok", cancelled: "" };

  // table builds a captioned table in a box that scrolls sideways when it
  // is wider than the page. columns: [label, className]; rows: arrays of
  // cells, each text, a node, or {v, c} with a class.
  function table(id, caption, columns, rows) {
    var head = el("tr", null, columns.map(function (c) {
      return el("th", { scope: "col", className: c[1] || null }, c[0]);
    }));
    var tbody = el("tbody", null, rows.map(function (r) {
      return el("tr", null, r.map(function (cell, i) {
        var cls = columns[i][1] || null;
        if (cell !== null && typeof cell === "object" && !(cell instanceof Node) && !Array.isArray(cell)) {
          return el("td", { className: [cls, cell.c].filter(Boolean).join(" ") }, cell.v);
        }
        return el("td", { className: cls }, cell);
      }));
    }));
    var t = el("table", { id: id }, [el("caption", null, caption), el("thead", null, head), tbody]);
    return el("div", { className: "scroll", tabindex: "0", role: "region", "aria-label": caption }, t);
  }

  function note(s) {
    return el("p", { className: "note" }, s);
  }

  function unknown(what, reason) {
    return el("p", { className: "note unknown" }, [what + " unknown: ", reason]);
  }

  function notReported(what) {
    return el("p", { className: "not-reported" }, what + ": not reported by this node's status.");
  }

  function fill(id, nodes) {
    var e = document.getElementById(id);
    clear(e);
    append(e, nodes);
  }

  // role says what a server leads: the meta group, and how many of
  // Concord's buckets and streams.
  function role(s, name) {
    var roles = [];
    if (name !== "" && s.meta_leader === name) roles.push("meta leader");
    var n = arr(s.buckets).filter(function (b) {
      return b.leader === name;
    }).length;
    if (n > 0) roles.push("leads " + plural(n, "stream"));
    return roles.length > 0 ? roles.join(", ") : "—";
  }

  function renderCluster(s) {
    var out = [];
    var leader = s.meta_leader ? s.meta_leader : [badge("unknown", "warn"), " ", str(s.meta_leader_unknown)];
    out.push(el("dl", { className: "facts" }, [
      el("dt", null, "Node"), el("dd", { className: "mono", id: "fact-node" }, str(s.node)),
      el("dt", null, "Mode"), el("dd", null, str(s.mode)),
      el("dt", null, "Meta leader"), el("dd", { id: "fact-leader" }, leader)
    ]));
    var peers = arr(s.peers);
    if (peers.length === 0) {
      out.push(note("No peers reported (a client-mode node sees only the servers that lead or host Concord's streams)."));
    } else {
      out.push(table("peers-table", "Peers (" + peers.length + ")", [["Peer"], ["Role"], ["State"], ["Reason", "wide"]],
        peers.map(function (p) {
          var st = str(p.state);
          return [{ v: str(p.name), c: "id" }, role(s, str(p.name)), badge(st.replace("_", " "), peerKinds[st]), str(p.reason)];
        })));
    }
    var buckets = arr(s.buckets);
    out.push(table("buckets-table", "Buckets and streams (" + buckets.length + ")",
      [["Name", "id"], ["Kind"], ["Replicas", "num"], ["Leader"], ["Messages", "num"], ["Bytes", "num"], ["Note", "wide"]],
      buckets.map(function (b) {
        var unread = b.unknown && !b.replicas;
        return [str(b.name), str(b.kind), unread ? "?" : fmtInt(b.replicas),
          b.leader ? str(b.leader) : badge("none", "warn"), unread ? "?" : fmtInt(b.messages),
          unread ? "?" : fmtInt(b.bytes),
          b.unknown ? { v: str(b.unknown), c: "warn-text" } : ""];
      })));
    fill("cluster-body", out);
  }

  function renderServices(s) {
    if (!has(s, "services") && !s.services_unknown) {
      fill("services-body", notReported("Services"));
      return;
    }
    var out = [];
    if (s.services_unknown) out.push(unknown("Services", str(s.services_unknown)));
    var services = arr(s.services);
    var rows = [];
    var ready = 0;
    services.forEach(function (svc) {
      var inst = arr(svc.instances);
      if (inst.length === 0) rows.push([str(svc.name), "", "", "", "", ""]);
      inst.forEach(function (i) {
        if (i.ready) ready++;
        rows.push([str(svc.name), { v: str(i.id), c: "id" },
          i.ready ? badge("ready", "ok") : badge("not ready", "warn"),
          str(i.base_url), str(i.zone) || "—", str(i.version) || "—"]);
      });
    });
    if (services.length === 0 && !s.services_unknown) {
      out.push(note("No service is registered."));
    } else if (services.length > 0) {
      out.push(table("services-table", plural(services.length, "service") + ", " + plural(rows.length, "instance") + ", " + ready + " ready",
        [["Service", "wide"], ["Instance", "id"], ["Ready"], ["Address"], ["Zone"], ["Version"]], rows));
    }
    fill("services-body", out);
  }

  function leaseRows(list, who) {
    return list.map(function (l) {
      return [str(l.name), { v: str(l[who]), c: "id" }, { v: fmtInt(l.token), c: "token" }, fmtMs(l.expires_in_ms),
        l.waiting === undefined || l.waiting < 0 ? "?" : fmtInt(l.waiting)];
    });
  }

  function renderLocks(s) {
    if (!has(s, "locks")) {
      fill("locks-body", notReported("Locks and elections"));
      return;
    }
    var l = s.locks;
    var out = [];
    if (l.unknown) out.push(unknown("Locks", str(l.unknown)));
    if (l.truncated) out.push(note("The list is cut short: there are more locks than one status read returns."));
    var held = arr(l.held);
    out.push(held.length === 0 ? note("No lock is held.") :
      table("locks-held", "Locks held (" + held.length + ")",
        [["Lock", "wide"], ["Holder", "id"], ["Token", "num"], ["Time left", "num"], ["Waiting", "num"]], leaseRows(held, "holder")));
    var el2 = arr(l.elections);
    out.push(el2.length === 0 ? note("No election has a leader.") :
      table("locks-elections", "Elections (" + el2.length + ")",
        [["Election", "wide"], ["Leader", "id"], ["Token", "num"], ["Time left", "num"], ["Waiting", "num"]], leaseRows(el2, "leader")));
    fill("locks-body", out);
  }

  function renderLimits(s) {
    if (!has(s, "limits")) {
      fill("limits-body", notReported("Rate limits"));
      return;
    }
    var limits = arr(s.limits);
    if (limits.length === 0) {
      fill("limits-body", note("No procedure has a rate limit."));
      return;
    }
    fill("limits-body", table("limits-table", "Rate limits (" + limits.length + ")",
      [["Procedure", "wide"], ["Algorithm"], ["Scope"], ["Rate", "num"], ["Burst", "num"], ["Admitted", "num"],
        ["Refused", "num"], ["Saturation", "num"]],
      limits.map(function (x) {
        var sat = num(x.saturation);
        var pct = Math.round(sat * 100) + "%";
        var refused = num(x.refused);
        return [str(x.procedure), str(x.algorithm).replace("_", " "), str(x.scope), fmtInt(x.rate) + " / " + fmtMs(x.per_ms),
          fmtInt(x.burst), fmtInt(x.admitted),
          refused > 0 ? badge(fmtInt(refused), "warn") : "0",
          [el("meter", { min: "0", max: "1", low: "0.5", high: "0.9", optimum: "0", value: String(Math.min(Math.max(sat, 0), 1)), "aria-hidden": "true" }), pct]];
      })));
  }

  function renderBreakers(s) {
    if (!has(s, "breakers")) {
      fill("breakers-body", notReported("Circuit breakers"));
      return;
    }
    var list = arr(s.breakers);
    if (list.length === 0) {
      fill("breakers-body", note("No client has called an instance yet."));
      return;
    }
    fill("breakers-body", table("breakers-table", "Breakers per instance (" + list.length + ")",
      [["Service", "wide"], ["Instance", "id"], ["Address"], ["State"], ["Failures", "num"]],
      list.map(function (b) {
        var st = str(b.state);
        return [str(b.service), str(b.instance), str(b.address), badge(st.replace("_", " "), breakerKinds[st]), fmtInt(b.failures)];
      })));
  }

  function branches(r, withErrors) {
    return el("ul", { className: "branches" }, arr(r.branches).map(function (b) {
      var parts = [str(b.service), " ", el("code", null, str(b.try))];
      if (b.done) parts.push(" ", badge("done", "ok"));
      if (b.error && withErrors) parts.push(el("br"), badge("error", "bad"), " ", str(b.error));
      return el("li", null, parts);
    }));
  }

  function txTable(id, caption, list, withErrors) {
    if (list.length === 0) return [el("h3", null, caption), note("None.")];
    return [el("h3", null, caption + " (" + list.length + ")"), table(id, caption,
      [["Transaction", "id"], ["State"], ["Branches", "wide"], ["Coordinator"], ["Attempts", "num"], ["Started", "num"], ["Updated", "num"], ["Cause", "wide"]],
      list.map(function (r) {
        var st = str(r.state);
        return [str(r.id), badge(st, txKinds[st]), branches(r, withErrors), str(r.coordinator), fmtInt(r.attempts),
          fmtAge(r.created), fmtAge(r.updated), str(r.cause)];
      }))];
  }

  function renderTransactions(s) {
    if (!has(s, "transactions")) {
      fill("transactions-body", notReported("TCC transactions"));
      return;
    }
    var t = s.transactions;
    var out = [];
    if (t.unknown) out.push(unknown("The transaction log", str(t.unknown)));
    out.push(txTable("tx-stuck", "Stuck", arr(t.stuck), true));
    out.push(txTable("tx-inflight", "In flight", arr(t.in_flight), true));
    out.push(txTable("tx-finished", "Recently finished", arr(t.finished), false));
    fill("transactions-body", out);
  }

  function renderMessages(s) {
    if (!has(s, "messages")) {
      fill("messages-body", notReported("Messages"));
      fill("outboxes-body", null);
      showDeadLetters(0);
      return;
    }
    var m = s.messages;
    var out = [el("h3", null, "Consumers")];
    if (m.consumers_unknown) out.push(unknown("Consumers", str(m.consumers_unknown)));
    var cons = arr(m.consumers);
    if (cons.length === 0 && !m.consumers_unknown) out.push(note("No consumer is subscribed."));
    else if (cons.length > 0) {
      out.push(table("consumers-table", "Consumers (" + cons.length + ")",
        [["Consumer"], ["Topic"], ["Partitions", "num"], ["Pending", "num"], ["In flight", "num"], ["Redelivered", "num"]],
        cons.map(function (c) {
          return [str(c.name), str(c.topic), fmtInt(c.partitions), fmtInt(c.pending), fmtInt(c.in_flight),
            num(c.redelivered) > 0 ? badge(fmtInt(c.redelivered), "warn") : "0"];
        })));
    }
    out.push(el("h3", null, "Dead letters"));
    var n = 0;
    if (m.dead_letters_unknown) {
      out.push(unknown("Dead letters", str(m.dead_letters_unknown)));
    } else {
      n = num(m.dead_letters);
      out.push(el("p", null, [el("span", { className: "count", id: "dead-letters-count" }, fmtInt(n)),
        n === 1 ? " message in CONCORD_DEAD_LETTERS." : " messages in CONCORD_DEAD_LETTERS."]));
      if (n > 0) {
        out.push(el("p", null, dlPath ?
          "List, replay or discard them below with an admin token, or from a shell:" :
          "This listener serves no dead-letter routes. From a shell that reaches the NATS servers:"));
        out.push(el("code", { className: "cli" }, dlPath ?
          "concord dead-letters list                 # the app's admin listener, -addr URL\nconcord dead-letters replay SEQ           # or -all\nconcord dead-letters discard SEQ          # or -all" :
          "concord dead-letters list -nats URL\nconcord dead-letters replay -nats URL SEQ   # or -all\nconcord dead-letters discard -nats URL SEQ"));
      }
    }
    fill("messages-body", out);
    showDeadLetters(n);
    var obs = arr(m.outboxes);
    fill("outboxes-body", [el("h3", null, "Outboxes"), obs.length === 0 ?
      note("No outbox is relayed by the process that answered.") :
      table("outboxes-table", "Outboxes relayed here (" + obs.length + ")",
        [["Instance", "id"], ["Store"], ["Waiting rows", "num"], ["Oldest waiting", "num"], ["Note", "wide"]],
        obs.map(function (o) {
          return [str(o.instance), str(o.store), o.unknown ? "?" : fmtInt(o.rows),
            num(o.rows) > 0 ? fmtMs(o.oldest_age_ms) : "—", str(o.unknown)];
        }))]);
  }

  // Dead letters: the list, replay and discard need an admin token, which
  // the operator pastes into a password field. It is kept in this tab's
  // sessionStorage (and memory), sent only as a Bearer header to the
  // dead-letter routes of this origin, and never put in a URL.
  var dlPath = body.getAttribute("data-dead-letters") || "";
  var dlTokenKey = "concord.console.adminToken";
  var dlToken = "";
  var dlCount = -1; // the count of the last status, -1 before one
  var dlListed = -1; // the count the list was last read at
  var dlBusy = false; // a request to the routes is under way
  var dlLimit = 100;
  var dlDone = ""; // what the last replay or discard did, shown until the next one

  try {
    dlToken = window.sessionStorage.getItem(dlTokenKey) || "";
  } catch (e) {
    dlToken = "";
  }

  function setToken(t) {
    dlToken = t;
    try {
      if (t) window.sessionStorage.setItem(dlTokenKey, t);
      else window.sessionStorage.removeItem(dlTokenKey);
    } catch (e) {
      // Storage may be off: the token stays in memory for this page.
    }
    document.getElementById("dl-token-forget").hidden = !t;
  }

  function dlMessage(id, s) {
    var e = document.getElementById(id);
    e.textContent = s;
    if (id === "dl-error") e.hidden = s === "";
  }

  // dlFetch calls a dead-letter route with the token; done gets the
  // decoded answer, or the failure's text (401 forgets the token).
  function dlFetch(method, path, done) {
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () {
      if (ctrl) ctrl.abort();
    }, 30000);
    var status = 0;
    var sent = dlToken; // a 401 forgets this token, not one pasted since
    // finish ends this request before done runs: done may start the next
    // one (a reload after an action), which must find dlBusy its own.
    var finish = function (data, why) {
      clearTimeout(timer);
      dlBusy = false;
      done(data, why);
    };
    dlBusy = true;
    fetch(path, { method: method, cache: "no-store", credentials: "same-origin", referrerPolicy: "no-referrer",
      headers: { Accept: "application/json", Authorization: "Bearer " + sent }, signal: ctrl ? ctrl.signal : undefined })
      .then(function (res) {
        status = res.status;
        return res.text();
      })
      .then(function (t) {
        var data = null;
        try {
          data = JSON.parse(t);
        } catch (e) {
          data = null;
        }
        var why = data !== null && typeof data === "object" && typeof data.error === "string" ? data.error : "";
        if (status === 401) {
          if (dlToken === sent) setToken("");
          finish(null, "The admin token was refused (HTTP 401): paste a token from the app's admin credentials file (admin.creds in its data directory, the second field of a line).");
        } else if (status === 404 && path.indexOf(dlPath + "?") === 0) {
          finish(null, "This listener serves no dead-letter routes (HTTP 404): use concord dead-letters with -nats URL.");
        } else if (status < 200 || status > 299 || data === null || typeof data !== "object") {
          finish(data, (why || "the dead-letter route answered without JSON") + " (HTTP " + status + ")");
        } else {
          finish(data, "");
        }
      })
      .catch(function (e) {
        finish(null, e && e.name === "AbortError" ? "the dead-letter route did not answer within 30 s" : "the dead-letter route cannot be reached: " + str(e && e.message));
      });
  }

  // showDeadLetters shows the panel while there are dead letters and the
  // listener has their routes, and reads the list when the count moved.
  function showDeadLetters(n) {
    var panel = document.getElementById("dead-letters-panel");
    dlCount = n;
    if (!dlPath || n <= 0) {
      // With none left, the panel stays only to say what the last
      // replay or discard did.
      panel.hidden = !dlPath || !dlDone;
      if (n <= 0) {
        fill("dl-list", null);
        document.getElementById("dl-actions").hidden = true;
        dlListed = -1;
        if (dlDone) dlMessage("dl-note", dlDone + " No dead letter is left.");
      }
      return;
    }
    panel.hidden = false;
    document.getElementById("dl-token-forget").hidden = !dlToken;
    if (!dlToken) {
      dlMessage("dl-note", "Paste an admin token to list, replay and discard the dead letters.");
      fill("dl-list", null);
      document.getElementById("dl-actions").hidden = true;
      dlListed = -1;
      return;
    }
    if (n !== dlListed && !dlBusy) loadDeadLetters();
  }

  function loadDeadLetters() {
    var at = dlCount;
    dlFetch("GET", dlPath + "?limit=" + dlLimit, function (data, err) {
      if (err) {
        dlMessage("dl-error", err);
        if (!dlToken) showDeadLetters(dlCount);
        return;
      }
      dlListed = at;
      dlMessage("dl-error", "");
      renderDeadLetters(arr(data.dead_letters), !!data.next);
    });
  }

  function renderDeadLetters(list, more) {
    document.getElementById("dl-actions").hidden = list.length === 0;
    dlMessage("dl-note", (dlDone ? dlDone + " " : "") + (list.length === 0 ? "No dead letter is left." :
      (more ? "The oldest " + list.length + " dead letters (replay or discard them to see the next)." : plural(list.length, "dead letter") + ", oldest first.")));
    fill("dl-list", list.length === 0 ? null : table("dead-letters-table", "Dead letters (" + list.length + (more ? "+" : "") + ")",
      [["Seq", "num"], ["Consumer"], ["Topic"], ["Key"], ["Deliveries", "num"], ["Error", "wide"], ["Stored", "num"], ["Payload", "num"], ["Action"]],
      list.map(function (d) {
        var seq = str(d.seq);
        return [seq, str(d.consumer), d.topic ? str(d.topic) : badge("malformed", "bad"), str(d.key) || "—", fmtInt(d.deliveries),
          str(d.error), fmtAge(d.time), fmtInt(d.payload_size) + " B",
          el("span", { className: "dl-buttons" }, [
            d.topic ? button("Replay", "replay-" + seq, function () { act(seq, "replay"); }) : null,
            button("Discard", "discard-" + seq, function () { act(seq, "discard"); }, "danger")])];
      })));
  }

  function button(label, id, onClick, cls) {
    var b = el("button", { type: "button", id: "dl-" + id, className: cls || null }, label);
    b.addEventListener("click", onClick);
    return b;
  }

  function setButtons(disabled) {
    Array.prototype.forEach.call(document.querySelectorAll("#dead-letters-panel button"), function (b) {
      b.disabled = disabled;
    });
  }

  // act replays or discards dead letter seq ("all" for every one), then
  // reads the list again.
  function act(seq, op) {
    if (dlBusy || !dlToken) return;
    setButtons(true);
    dlDone = "";
    dlFetch("POST", dlPath + "/" + encodeURIComponent(seq) + "/" + op, function (data, err) {
      setButtons(false);
      if (err) {
        var extra = data && has(data, "done") ? " (" + fmtInt(data.done) + " done)" : "";
        dlMessage("dl-error", (op === "replay" ? "Replay" : "Discard") + " failed: " + err + extra);
        if (!dlToken) showDeadLetters(dlCount);
        else loadDeadLetters();
        return;
      }
      dlMessage("dl-error", "");
      var what = seq === "all" ? plural(num(data.done), "dead letter") + (data.more ? " (more remain)" : "") : "dead letter " + seq;
      dlDone = (op === "replay" ? "Replayed " : "Discarded ") + what + ".";
      dlMessage("dl-note", dlDone);
      loadDeadLetters();
    });
  }

  if (dlPath) {
    document.getElementById("dl-token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var input = document.getElementById("dl-token");
      var t = input.value.trim();
      input.value = "";
      if (!t) return;
      setToken(t);
      dlMessage("dl-error", "");
      dlListed = -1;
      showDeadLetters(dlCount);
    });
    document.getElementById("dl-token-forget").addEventListener("click", function () {
      setToken("");
      dlMessage("dl-error", "");
      showDeadLetters(dlCount);
    });
    document.getElementById("dl-replay-all").addEventListener("click", function () {
      act("all", "replay");
    });
    document.getElementById("dl-discard-all").addEventListener("click", function () {
      act("all", "discard");
    });
  }

  var sections = [renderCluster, renderServices, renderLocks, renderLimits, renderBreakers, renderTransactions, renderMessages];

  function render(s) {
    text("node-name", str(s.node));
    text("node-mode", str(s.mode));
    document.title = "Concord console: " + str(s.node);
    sections.forEach(function (f) {
      f(s);
    });
  }

  // showState shows whether the data is current, and the banner while
  // reads fail. Only the reason sits in the alert region, and it changes
  // only with the reason: the ages below it move on every second.
  function showState() {
    var now = Date.now();
    var banner = document.getElementById("banner");
    var next = Math.max(nextAt - now, 0);
    if (failure === null) {
      banner.hidden = true;
      text("banner-reason", "");
      body.classList.remove("stale");
      if (last) text("updated", "Updated at " + fmtClock(last.at) + " (" + fmtMs(now - last.at) + " ago).");
      return;
    }
    body.classList.toggle("stale", last !== null);
    var reason = document.getElementById("banner-reason");
    if (reason.textContent !== failure.reason) reason.textContent = failure.reason;
    text("banner-sub", (last ?
      "Showing the last good data, read at " + fmtClock(last.at) + " (" + fmtMs(now - last.at) + " ago), greyed out. " :
      "No status has been read yet. ") + "Next try in " + fmtMs(next) + ".");
    banner.hidden = false;
    text("updated", last ? "Stale: last read at " + fmtClock(last.at) + " (" + fmtMs(now - last.at) + " ago)." : "No status yet.");
  }

  function schedule() {
    // Back off exponentially while reads fail: 2x, 4x, ... the refresh
    // interval, at most maxBackoffMs.
    var delay = failures === 0 ? refreshMs : Math.min(refreshMs * Math.pow(2, Math.min(failures, 8)), maxBackoffMs);
    nextAt = Date.now() + delay;
    setTimeout(poll, delay);
  }

  function fail(reason) {
    failures++;
    failure = { reason: reason, since: failure ? failure.since : Date.now() };
  }

  function poll() {
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () {
      if (ctrl) ctrl.abort();
    }, readTimeoutMs);
    var status = 0;
    fetch(statusPath, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" }, signal: ctrl ? ctrl.signal : undefined })
      .then(function (res) {
        status = res.status;
        return res.text().then(function (t) {
          var data = null;
          try {
            data = JSON.parse(t);
          } catch (e) {
            data = null;
          }
          if (res.ok && data !== null && typeof data === "object" && typeof data.node === "string") {
            render(data);
            last = { data: data, at: Date.now() };
            failures = 0;
            failure = null;
            return;
          }
          if (data !== null && typeof data === "object" && typeof data.error === "string") {
            fail(data.error + " (HTTP " + status + ")");
          } else {
            fail("the status route answered HTTP " + status + " without a status");
          }
        });
      })
      .catch(function (e) {
        if (e && e.name === "AbortError") fail("the status route did not answer within " + fmtMs(readTimeoutMs));
        else if (status === 0) fail("the status route cannot be reached: " + str(e && e.message));
        else fail("the console could not show the status: " + str(e && e.message));
      })
      .then(function () {
        clearTimeout(timer);
        schedule();
        showState();
      });
  }

  text("status-path", statusPath);
  text("refresh", fmtMs(refreshMs));
  // The ages in the banner and the header move on between reads.
  setInterval(showState, 1000);
  poll();
})();
