/* nev-relay dashboard: plain JavaScript, no framework, no external resources.
 *
 * Every call to /api/v1 carries "Authorization: Bearer <token>". The token is typed into the
 * field in the header (kept in localStorage) or given in the address as #token=... (a
 * fragment never reaches the server; ?token=... works too but lands in access logs), which
 * is stored and then removed from the address bar. A 401 asks for the token again.
 *
 * Views (hash routing):  #            overview
 *                        #vin=VIN     one vehicle: archive and plots
 *
 * Times are shown in UTC+8, the zone of GB/T 32960.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "nev-relay.token";
  var ONLINE_SECONDS = 300;
  var REFRESH_MS = 30000;
  var CST_MS = 8 * 3600 * 1000;
  var LEVEL_COLOURS = { 0: "#1e88e5", 1: "#f9a825", 2: "#ef6c00", 3: "#d32f2f" };
  var NO_LEVEL_COLOUR = "#9aa5b1";
  var LEVEL_NAMES = {
    0: ["Codes only", "仅故障码"], 1: ["Level 1", "一级"], 2: ["Level 2", "二级"], 3: ["Level 3", "三级"]
  };

  var state = {
    token: "",
    memoryToken: "",   // when localStorage is unavailable
    view: null,
    vin: null,
    positions: [],
    series: null,
    timer: null,
    loading: false,
    authFailed: false
  };

  // ------------------------------------------------------------------ DOM helpers

  function $(id) { return document.getElementById(id); }

  /** h("td", {class: "num", title: "x"}, child, "text", ...) */
  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "class") node.className = v;
        else if (k === "text") node.textContent = v;
        else if (k.slice(0, 2) === "on" && typeof v === "function") node.addEventListener(k.slice(2), v);
        else if (k === "dataset") Object.keys(v).forEach(function (d) { node.dataset[d] = v[d]; });
        else node.setAttribute(k, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  function put(target, child) {
    var node = typeof target === "string" ? $(target) : target;
    while (node.firstChild) node.removeChild(node.firstChild);
    append(node, child);
    return node;
  }

  /** English label with its Chinese name after it. */
  function bi(en, zh) { return [en + " ", h("span", { class: "zh", text: zh })]; }

  // ------------------------------------------------------------------ formatting

  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = "0" + n; return n; }

  function cstParts(ms) {
    var d = new Date(ms + CST_MS);
    return { y: d.getUTCFullYear(), mo: d.getUTCMonth() + 1, d: d.getUTCDate(), h: d.getUTCHours(),
             mi: d.getUTCMinutes(), s: d.getUTCSeconds() };
  }

  function fmtTime(iso) {
    if (iso === null || iso === undefined || iso === "") return "–";
    var ms = typeof iso === "number" ? iso : Date.parse(iso);
    if (isNaN(ms)) return String(iso);
    var p = cstParts(ms);
    return p.y + "-" + pad(p.mo) + "-" + pad(p.d) + " " + pad(p.h) + ":" + pad(p.mi) + ":" + pad(p.s);
  }

  function fmtShort(iso) {
    if (!iso) return "–";
    var ms = Date.parse(iso);
    if (isNaN(ms)) return String(iso);
    var p = cstParts(ms);
    return pad(p.mo) + "-" + pad(p.d) + " " + pad(p.h) + ":" + pad(p.mi);
  }

  function ago(iso) {
    if (!iso) return "";
    var s = (Date.now() - Date.parse(iso)) / 1000;
    if (isNaN(s)) return "";
    if (s < 0) return "in the future";
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  function fmtNum(v, digits) {
    if (v === null || v === undefined || v === "") return "–";
    var n = Number(v);
    if (!isFinite(n)) return String(v);
    if (digits === undefined) return n.toLocaleString("en-US", { maximumFractionDigits: 2 });
    return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function withUnit(v, unit, digits) { return v === null || v === undefined ? "–" : fmtNum(v, digits) + " " + unit; }

  function tickLabel(v) { return String(Number(v.toFixed(6))); }

  function levelBadge(level) {
    if (level === null || level === undefined) return h("span", { class: "badge lvnone", text: "–" });
    var l = Number(level);
    var cls = "badge lv" + (l >= 0 && l <= 3 ? l : 3);
    var name = LEVEL_NAMES[l] ? LEVEL_NAMES[l][0] : "Level " + l;
    return h("span", { class: cls, title: name, text: l === 0 ? "0" : "L" + l });
  }

  function onlineBadge(receivedAt) {
    var online = receivedAt && (Date.now() - Date.parse(receivedAt)) / 1000 <= ONLINE_SECONDS;
    return online ? h("span", { class: "badge on", text: "online 在线" })
                  : h("span", { class: "badge off", text: "offline 离线" });
  }

  function vinLink(vin) { return h("a", { href: "#vin=" + encodeURIComponent(vin), class: "vin", text: vin }); }

  function dl(pairs) {
    var list = h("dl", { class: "kv" });
    pairs.forEach(function (p) {
      if (!p) return;
      list.appendChild(h("dt", null, p[0]));
      list.appendChild(h("dd", null, p[1] === null || p[1] === undefined || p[1] === "" ? "–" : p[1]));
    });
    return list;
  }

  /** columns: [{label, key | render(row), num, mono}] */
  function table(columns, rows, empty) {
    columns = columns.filter(Boolean);
    var head = h("tr", null, columns.map(function (c) { return h("th", { class: c.num ? "num" : null }, c.label); }));
    var body = h("tbody");
    if (!rows || rows.length === 0) {
      body.appendChild(h("tr", null, h("td", { class: "empty", colspan: columns.length }, empty || bi("No data", "无数据"))));
    }
    (rows || []).forEach(function (r) {
      body.appendChild(h("tr", null, columns.map(function (c) {
        var v = c.render ? c.render(r) : r[c.key];
        if (v === null || v === undefined || v === "") v = "–";
        return h("td", { class: [c.num ? "num" : "", c.mono ? "mono" : ""].join(" ").trim() || null }, v);
      })));
    });
    return h("table", null, h("thead", null, head), body);
  }

  // ------------------------------------------------------------------ token and API

  function storedToken() {
    try { return window.localStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return state.memoryToken; }
  }

  function storeToken(token) {
    state.token = token;
    state.memoryToken = token;
    try {
      if (token) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* private mode: keep it in memory */ }
  }

  function banner(kind, content) {
    var b = $("banner");
    if (!content) { b.hidden = true; b.dataset.kind = ""; put(b, null); return; }
    b.className = "banner" + (kind === "error" ? " error" : "");
    b.dataset.kind = kind;
    put(b, content);
    b.hidden = false;
  }

  function needToken(reason) {
    state.authFailed = true;
    var input = $("token-input");
    input.classList.add("need");
    banner("token", [h("strong", null, reason), " ",
      "Enter an API token in the field at the top right and press Save. ",
      h("span", { class: "zh", text: "请在右上角输入访问令牌并保存。" })]);
  }

  function tokenAccepted() {
    state.authFailed = false;
    $("token-input").classList.remove("need");
    var b = $("banner");
    if (b.dataset.kind === "token" || b.dataset.kind === "network") banner(null, null);
  }

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.name = "ApiError";

  function api(path, options) {
    options = options || {};
    if (!state.token) {
      needToken("No API token. 未设置令牌。");
      return Promise.reject(new ApiError(401, "no API token"));
    }
    var headers = { "Authorization": "Bearer " + state.token, "Accept": "application/json" };
    var init = { method: options.method || "GET", headers: headers, cache: "no-store" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    return fetch(path, init).then(function (resp) {
      return resp.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (resp.status === 401) {
          needToken("The node refused the token (401). 令牌无效。");
          throw new ApiError(401, (data && data.error) || "missing or unknown bearer token");
        }
        if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || resp.statusText || "HTTP " + resp.status);
        tokenAccepted();
        return data;
      });
    }, function (err) {
      banner("network", [h("strong", null, "Cannot reach the node. "), "Is it running? ",
        h("span", { class: "zh", text: "无法连接节点。" }), " (" + (err && err.message || err) + ")"]);
      throw new ApiError(0, "cannot reach the node");
    });
  }

  function errorText(err) {
    if (!(err instanceof ApiError)) return "Error: " + (err && err.message || err);
    if (err.status === 401) return "Needs a valid API token (401). 需要有效令牌。";
    if (err.status === 403) return "Not allowed (403): " + err.message + ". 权限不足。";
    if (err.status === 404) return "Not found (404). 未找到。";
    if (err.status === 0) return "The node cannot be reached. 无法连接节点。";
    return "Error " + err.status + ": " + err.message;
  }

  function showError(target, err) {
    put(target, h("div", { class: "error", text: errorText(err) }));
    if (!(err instanceof ApiError)) console.error(err);
  }

  function q(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      if (params[k] !== null && params[k] !== undefined && params[k] !== "")
        parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(params[k]));
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  // ------------------------------------------------------------------ overview

  function loadOverview() {
    if (!state.token) { needToken("No API token. 未设置令牌。"); return Promise.resolve(); }
    state.loading = true;
    return Promise.all([loadCounts(), loadVehicles(), loadAlarmLevels(), loadAlarms(), loadHazards(), loadMap(),
                        loadCharging()]).then(function () {
      state.loading = false;
      $("refreshed").textContent = state.authFailed ? "not loaded: a valid token is needed · 需要有效令牌"
                                                    : "updated " + fmtTime(Date.now()) + " (UTC+8)";
    });
  }

  function setTile(id, value, error) {
    var node = $(id);
    node.textContent = error ? "?" : fmtNum(value);
    node.title = error ? errorText(error) : "";
  }

  function loadCounts() {
    var stats = api("/api/v1/stats").then(function (s) {
      setTile("stat-registered", s.vehicles.registered);
      setTile("stat-seen", s.vehicles.seen);
      setTile("stat-frames", s.frames.data);
      setTile("stat-unregistered", s.vehicles.unregistered);
    }, function (e) {
      ["stat-registered", "stat-seen", "stat-frames", "stat-unregistered"].forEach(function (id) { setTile(id, null, e); });
    });
    var online = api("/api/v1/vehicles" + q({ online: "true", limit: 1 })).then(function (r) {
      setTile("stat-online", r.total);
    }, function (e) { setTile("stat-online", null, e); });
    var open = api("/api/v1/alarms" + q({ open: "true", limit: 1 })).then(function (r) {
      setTile("stat-open-alarms", r.total);
    }, function (e) { setTile("stat-open-alarms", null, e); });
    return Promise.all([stats, online, open]);
  }

  function loadVehicles() {
    var which = $("vehicle-filter").value;
    var params = { limit: 200 };
    if (which === "online") params.online = "true";
    if (which === "alarm") params.alarm_level = 1;
    var title = { online: bi("Vehicles online", "在线车辆"), all: bi("Vehicles", "全部车辆"),
                  alarm: bi("Vehicles with an alarm", "报警车辆") }[which];
    put($("sec-vehicles").querySelector("h2"), title);
    return api("/api/v1/vehicles" + q(params)).then(function (r) {
      $("vehicles-count").textContent = r.items.length < r.total ? r.items.length + " of " + r.total : r.total + " vehicles";
      put("vehicles", table([
        { label: "VIN", render: function (v) { return vinLink(v.vin); } },
        { label: bi("Plate", "车牌"), key: "plate" },
        { label: bi("Sector", "行业"), key: "sector" },
        { label: bi("Region", "地区"), key: "region_code", mono: true },
        { label: bi("Owner", "企业"), key: "owner" },
        { label: bi("Status", "状态"), render: function (v) { return v.online ? h("span", { class: "badge on", text: "online" }) : h("span", { class: "badge off", text: "offline" }); } },
        { label: bi("State", "车辆状态"), key: "vehicle_state" },
        { label: bi("Charging", "充电"), key: "charging_state" },
        { label: "Speed km/h", num: true, render: function (v) { return fmtNum(v.speed_kmh, 1); } },
        { label: "SOC %", num: true, render: function (v) { return fmtNum(v.soc_pct); } },
        { label: bi("Alarm", "报警"), render: function (v) { return levelBadge(v.alarm_level); } },
        { label: bi("Last data", "最近数据"), render: function (v) {
          return v.received_at ? [fmtTime(v.collected_at), h("span", { class: "by", text: "received " + ago(v.received_at) })] : "never";
        } }
      ], r.items, which === "online" ? bi("No vehicle online", "暂无在线车辆") : null));
    }, function (e) { $("vehicles-count").textContent = ""; showError("vehicles", e); });
  }

  function renderLevels(container, rows, opts) {
    // rows: {key: "3", alarms, open, vehicles}
    var byKey = {};
    rows.forEach(function (r) { byKey[String(r.key)] = r; });
    var keys = ["3", "2", "1"];
    Object.keys(byKey).sort().reverse().forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); });
    var max = 1;
    keys.forEach(function (k) { if (byKey[k]) max = Math.max(max, Number(byKey[k].alarms) || 0); });
    var box = h("div", { class: "levels" });
    keys.forEach(function (k) {
      var r = byKey[k] || { alarms: 0, open: 0, vehicles: 0 };
      var n = Number(r.alarms) || 0;
      var lv = Number(k);
      var names = LEVEL_NAMES[lv] || ["Level " + k, ""];
      var row = h("div", { class: "level-row", dataset: { level: k } },
        h("span", { class: "level-name" }, h("span", { class: "badge lv" + (lv >= 0 && lv <= 3 ? lv : 3), text: k }), " ",
          names[0], " ", h("span", { class: "zh", text: names[1] })),
        h("div", { class: "level-track" }, h("div", { class: "level-bar lv" + (lv >= 0 && lv <= 3 ? lv : 3),
                                                      style: "width:" + (n ? Math.max(0.5, 100 * n / max) : 0) + "%" })),
        h("span", { class: "level-count", id: (opts.idPrefix || "alarm-level-") + k, text: String(n) }));
      if (opts.extra) row.appendChild(h("div", { class: "level-extra", text: opts.extra(r) }));
      box.appendChild(row);
    });
    put(container, box);
  }

  function loadAlarmLevels() {
    var days = Number($("alarm-period").value) || 30;
    var since = new Date(Date.now() - days * 86400000).toISOString();
    var levels = api("/api/v1/alarms/stats" + q({ by: "level", from: since })).then(function (rows) {
      renderLevels("alarm-levels", rows, {
        extra: function (r) {
          return (r.open || 0) + " open · " + (r.vehicles || 0) + " vehicle" + (r.vehicles === 1 ? "" : "s") +
            " · 未结束 " + (r.open || 0);
        }
      });
      var total = rows.reduce(function (a, r) { return a + (Number(r.alarms) || 0); }, 0);
      $("alarm-levels").appendChild(h("div", { class: "muted sub" },
        total + " alarm episodes in the last " + (days === 1 ? "24 h" : days + " days") + " (by highest level reached) · 报警总数 " + total));
    }, function (e) { showError("alarm-levels", e); });
    var flags = api("/api/v1/alarms/stats" + q({ by: "flag", from: since })).then(function (rows) {
      put("alarm-flags", table([
        { label: bi("Type", "类型"), key: "key" },
        { label: bi("Alarms", "次数"), key: "alarms", num: true },
        { label: bi("Open", "未结束"), key: "open", num: true },
        { label: bi("Vehicles", "车辆"), key: "vehicles", num: true },
        { label: bi("Highest", "最高等级"), render: function (r) { return levelBadge(r.max_level); } }
      ], rows.slice(0, 12), bi("No alarm in this period", "该时段无报警")));
    }, function (e) { showError("alarm-flags", e); });
    return Promise.all([levels, flags]);
  }

  function alarmTable(items, msgTarget, reload) {
    function actionCell(a, action, byKey, atKey) {
      if (a[byKey]) return [a[byKey], h("span", { class: "by", text: fmtTime(a[atKey]) })];
      var label = action === "acknowledge" ? bi("Acknowledge", "确认") : bi("Handle", "处置");
      return h("button", {
        type: "button", class: "small" + (action === "handle" ? " secondary" : ""),
        dataset: { alarm: a.id, action: action },
        onclick: function (ev) { alarmAction(ev.currentTarget, a.id, action, msgTarget, reload); }
      }, label);
    }
    return table([
      { label: "ID", key: "id", num: true },
      { label: "VIN", render: function (a) { return vinLink(a.vin); } },
      { label: bi("Level", "等级"), render: function (a) { return levelBadge(a.max_level); } },
      { label: bi("Flags", "报警标志"), render: function (a) { return (a.flags || []).join(", "); } },
      { label: bi("Fault codes", "故障码"), render: function (a) { return (a.fault_codes || []).join(", "); }, mono: true },
      { label: bi("Opened", "开始"), render: function (a) { return fmtTime(a.opened_at); } },
      { label: bi("Last seen", "最近"), render: function (a) {
        return a.closed_at ? [fmtTime(a.last_seen), h("span", { class: "by", text: "closed " + fmtTime(a.closed_at) })] : fmtTime(a.last_seen);
      } },
      { label: bi("Frames", "帧数"), key: "frames", num: true },
      { label: bi("Acknowledged", "确认"), render: function (a) { return actionCell(a, "acknowledge", "acknowledged_by", "acknowledged_at"); } },
      { label: bi("Handled", "处置"), render: function (a) { return actionCell(a, "handle", "handled_by", "handled_at"); } },
      { label: bi("Note", "备注"), key: "note" }
    ], items, bi("No alarms", "无报警"));
  }

  function message(target, kind, text) {
    var node = typeof target === "string" ? $(target) : target;
    node.className = "message" + (kind === "error" ? " error" : "");
    node.textContent = text;
    node.hidden = !text;
  }

  function alarmAction(button, id, action, msgTarget, reload) {
    var noteField = $("alarm-note");
    var note = state.view === "overview" && noteField ? noteField.value.trim() : "";
    button.disabled = true;
    return api("/api/v1/alarms/" + encodeURIComponent(id) + "/" + action, { method: "POST", body: { note: note } })
      .then(function (a) {
        message(msgTarget, "ok", "Alarm #" + a.id + (action === "acknowledge" ? " acknowledged by " + a.acknowledged_by + ". 已确认。"
                                                                              : " marked handled by " + a.handled_by + ". 已处置。"));
        if (noteField && state.view === "overview") noteField.value = "";
        return reload();
      }, function (e) {
        button.disabled = false;
        var text = e.status === 403
          ? "Not allowed (403): to " + action + " an alarm the token needs the operate role; this one lacks it. " +
            "无权限：需要 operate 角色的令牌。"
          : "Could not " + action + " alarm #" + id + ": " + errorText(e);
        message(msgTarget, "error", text);
      });
  }

  function loadAlarms() {
    return api("/api/v1/alarms" + q({ open: "true", limit: 200 })).then(function (r) {
      $("alarms-count").textContent = r.items.length < r.total ? r.items.length + " of " + r.total : r.total + " open";
      put("alarms", alarmTable(r.items, "alarm-message", function () { return Promise.all([loadAlarms(), loadCounts()]); }));
    }, function (e) { $("alarms-count").textContent = ""; showError("alarms", e); });
  }

  function loadHazards() {
    var offline = api("/api/v1/hazards/offline" + q({ limit: 200 })).then(function (r) {
      $("hz-offline-count").textContent = "(" + r.total + ")";
      put("hz-offline", table([
        { label: "VIN", render: function (v) { return vinLink(v.vin); } },
        { label: bi("Sector", "行业"), key: "sector" },
        { label: bi("Last seen", "最后上线"), render: function (v) { return v.last_seen ? fmtShort(v.last_seen) : "never 从未"; } },
        { label: bi("Days", "天数"), num: true, render: function (v) { return fmtNum(v.days, 1); } }
      ], r.items, bi("No long-offline vehicle", "无长期离线车辆")));
    }, function (e) { $("hz-offline-count").textContent = ""; showError("hz-offline", e); });
    var clusters = api("/api/v1/hazards/clusters").then(function (r) {
      $("hz-clusters-count").textContent = "(" + r.total + ")";
      put("hz-clusters", table([
        { label: bi("Centre", "中心"), render: function (c) {
          return h("span", { class: "nowrap" }, fmtNum(c.centre.longitude, 5) + "°E", h("br"), fmtNum(c.centre.latitude, 5) + "°N");
        } },
        { label: bi("Vehicles", "车辆数"), key: "vehicles", num: true },
        { label: "VINs", render: function (c) {
          var out = [];
          c.vins.forEach(function (v, i) { if (i) out.push(" "); out.push(vinLink(v)); });
          return out;
        } },
        { label: bi("Since", "停放自"), render: function (c) { return fmtShort(c.parked_since); } }
      ], r.items, bi("No clustered parking", "无集中停放")));
    }, function (e) { $("hz-clusters-count").textContent = ""; showError("hz-clusters", e); });
    var frequent = api("/api/v1/hazards/frequent-alarms").then(function (r) {
      $("hz-frequent-count").textContent = "(" + r.total + ")";
      put("hz-frequent", table([
        { label: "VIN", render: function (v) { return vinLink(v.vin); } },
        { label: bi("Alarms", "次数"), key: "alarms", num: true },
        { label: bi("Max", "最高"), render: function (v) { return levelBadge(v.max_level); } },
        { label: bi("Last", "最近"), render: function (v) { return fmtShort(v.last); } }
      ], r.items, bi("No vehicle with frequent alarms", "无频繁报警车辆")));
    }, function (e) { $("hz-frequent-count").textContent = ""; showError("hz-frequent", e); });
    return Promise.all([offline, clusters, frequent]);
  }

  function loadMap() {
    return api("/api/v1/positions").then(function (items) {
      state.positions = items;
      $("map-count").textContent = items.length + " vehicle position" + (items.length === 1 ? "" : "s") + " · 最新位置";
      drawMap($("map"), items);
    }, function (e) {
      state.positions = [];
      $("map-count").textContent = errorText(e);
      drawMap($("map"), [], errorText(e));
    });
  }

  function loadCharging() {
    return api("/api/v1/charging").then(function (c) {
      var st = c.stations || [], energy = c.energy_per_day || [], faults = c.frequent_faults || [];
      var sum = function (k) { return st.reduce(function (a, s) { return a + (Number(s[k]) || 0); }, 0); };
      var box = h("div");
      // "in_use" (occupied, charging or reserved) is given by newer nodes only
      var hasInUse = st.some(function (s) { return s.in_use !== undefined; });
      var tiles = [["Stations", "充电站", st.length], ["Connectors", "充电接口", sum("connectors")],
                   ["Available", "空闲可用", sum("available")]];
      if (hasInUse) tiles.push(["In use", "占用", sum("in_use")]);
      tiles.push(["Charging", "充电中", sum("charging")], ["Faulted", "故障", sum("faulted")],
                 ["Offline", "离线", sum("offline")]);
      box.appendChild(h("div", { class: "tiles", style: "margin-bottom:10px;grid-template-columns:repeat(" +
                                 tiles.length + ",minmax(0,1fr))" },
        tiles.map(function (t) {
          return h("div", { class: "tile" }, h("div", { class: "tile-label" }, bi(t[0], t[1])),
                   h("div", { class: "tile-value", text: fmtNum(t[2]) }));
        })));
      box.appendChild(h("div", { class: "sub" }, h("h3", null, bi("Stations", "充电站")), h("div", { class: "scroll short" }, table([
          { label: bi("Operator", "运营商"), key: "operator_id", mono: true },
          { label: bi("Station", "站点"), key: "station_id", mono: true },
          { label: bi("Region", "地区"), key: "region_code" },
          { label: bi("Connectors", "接口"), key: "connectors", num: true },
          { label: bi("Available", "空闲"), key: "available", num: true },
          hasInUse ? { label: bi("In use", "占用"), key: "in_use", num: true } : null,
          { label: bi("Charging", "充电中"), key: "charging", num: true },
          { label: bi("Faulted", "故障"), key: "faulted", num: true },
          { label: bi("Offline", "离线"), key: "offline", num: true }
        ], st, bi("No charging station reported yet", "暂无充电站数据")))));
      box.appendChild(h("div", { class: "grid two sub" },
        h("div", null, h("h3", null, bi("Energy per day", "每日充电量")), h("div", { class: "scroll short" }, table([
          { label: bi("Day", "日期"), key: "day" },
          { label: bi("Operator", "运营商"), key: "operator_id", mono: true },
          { label: bi("Sessions", "次数"), key: "sessions", num: true },
          { label: "kWh", num: true, render: function (r) { return fmtNum(r.energy_kwh, 2); } }
        ], energy, bi("No charging records", "暂无充电记录")))),
        h("div", null, h("h3", null, bi("Frequent faults", "频繁故障")), h("div", { class: "scroll short" }, table([
          { label: bi("Operator", "运营商"), key: "operator_id", mono: true },
          { label: bi("Target", "设备"), key: "target_id", mono: true },
          { label: bi("Alarms", "次数"), key: "alarms", num: true },
          { label: bi("Level", "等级"), key: "level", num: true }
        ], faults, bi("No open charging faults", "暂无故障"))))));
      put("charging", box);
    }, function (e) { showError("charging", e); });
  }

  // ------------------------------------------------------------------ canvas helpers

  function niceStep(span, count) {
    var raw = span / Math.max(1, count);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }

  function niceTicks(lo, hi, count) {
    if (!(hi - lo > 1e-9)) {
      var d = Math.abs(lo) * 0.1 || 1;
      lo -= d; hi += d;
    }
    var step = niceStep(hi - lo, count);
    var a = Math.floor(lo / step + 1e-9) * step, b = Math.ceil(hi / step - 1e-9) * step;
    var ticks = [];
    for (var v = a; v <= b + step / 2; v += step) ticks.push(Number(v.toFixed(10)));
    return { lo: a, hi: b, step: step, ticks: ticks };
  }

  var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                    172800, 604800].map(function (s) { return s * 1000; });

  function timeTicks(t0, t1, maxTicks) {
    var span = t1 - t0, step = TIME_STEPS[TIME_STEPS.length - 1];
    for (var i = 0; i < TIME_STEPS.length; i++) if (span / TIME_STEPS[i] <= maxTicks) { step = TIME_STEPS[i]; break; }
    var ticks = [];
    // align on whole steps in UTC+8
    var first = Math.ceil((t0 + CST_MS) / step) * step - CST_MS;
    for (var t = first; t <= t1; t += step) ticks.push(t);
    return { step: step, ticks: ticks };
  }

  function timeTickLabel(t, step, span) {
    var p = cstParts(t);
    var hm = pad(p.h) + ":" + pad(p.mi);
    if (step < 60000) hm += ":" + pad(p.s);
    if (step >= 86400000) return pad(p.mo) + "-" + pad(p.d);
    if (span > 86400000) return pad(p.mo) + "-" + pad(p.d) + " " + hm;
    return hm;
  }

  /** Where the drawing is on the page (document px: x,y,width,height), for screenshots. */
  function markBox(canvas) {
    var r = canvas.getBoundingClientRect();
    canvas.dataset.box = [Math.round(r.left + window.scrollX), Math.round(r.top + window.scrollY),
                          Math.round(r.width), Math.round(r.height)].join(",");
  }

  function setupCanvas(canvas) {
    var dpr = window.devicePixelRatio || 1;
    var w = Math.max(50, canvas.clientWidth || canvas.width), hgt = Math.max(50, canvas.clientHeight || canvas.height);
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return { ctx: ctx, w: w, h: hgt };
  }

  var FONT = '11px system-ui, "DejaVu Sans", "WenQuanYi Micro Hei", sans-serif';
  var FONT_BOLD = '600 12px system-ui, "DejaVu Sans", "WenQuanYi Micro Hei", sans-serif';

  // ------------------------------------------------------------------ map-like scatter

  function levelColour(level) {
    return level === null || level === undefined ? NO_LEVEL_COLOUR : (LEVEL_COLOURS[level] || LEVEL_COLOURS[3]);
  }

  function degLabel(v, pos, neg, step) {
    var dec = Math.max(0, Math.min(5, Math.ceil(-Math.log10(step) + 1e-9)));
    return Math.abs(v).toFixed(dec) + "°" + (v >= 0 ? pos : neg);
  }

  function drawMap(canvas, items, errorMessage) {
    var c = setupCanvas(canvas), ctx = c.ctx, W = c.w, H = c.h;
    var L = 62, R = 12, T = 26, B = 28;
    var pw = W - L - R, ph = H - T - B;
    ctx.fillStyle = "#f7fafc";
    ctx.fillRect(0, 0, W, H);
    ctx.fillStyle = "#eef4f9";
    ctx.fillRect(L, T, pw, ph);
    var pts = (items || []).filter(function (p) {
      return isFinite(Number(p.longitude)) && isFinite(Number(p.latitude)) && p.longitude !== null && p.latitude !== null;
    });
    canvas._hits = [];
    canvas.dataset.points = String(pts.length);
    markBox(canvas);
    if (!pts.length) {
      ctx.fillStyle = "#667585";
      ctx.font = FONT_BOLD;
      ctx.textAlign = "center";
      ctx.fillText(errorMessage || "No positions yet · 暂无位置数据", L + pw / 2, T + ph / 2);
      return;
    }
    var lons = pts.map(function (p) { return Number(p.longitude); });
    var lats = pts.map(function (p) { return Number(p.latitude); });
    var lon0 = Math.min.apply(null, lons), lon1 = Math.max.apply(null, lons);
    var lat0 = Math.min.apply(null, lats), lat1 = Math.max.apply(null, lats);
    var midLon = (lon0 + lon1) / 2, midLat = (lat0 + lat1) / 2;
    var k = Math.max(0.05, Math.cos(midLat * Math.PI / 180));
    var spanLon = Math.max((lon1 - lon0) * 1.25, 0.01), spanLat = Math.max((lat1 - lat0) * 1.25, 0.01);
    var scale = Math.min(pw / (spanLon * k), ph / spanLat);   // pixels per degree of latitude
    var cx = L + pw / 2, cy = T + ph / 2;
    function X(lon) { return cx + (lon - midLon) * k * scale; }
    function Y(lat) { return cy - (lat - midLat) * scale; }
    var visLon0 = midLon - pw / 2 / (k * scale), visLon1 = midLon + pw / 2 / (k * scale);
    var visLat0 = midLat - ph / 2 / scale, visLat1 = midLat + ph / 2 / scale;

    // graticule
    ctx.save();
    ctx.beginPath();
    ctx.rect(L, T, pw, ph);
    ctx.clip();
    ctx.strokeStyle = "#d8e2ec";
    ctx.lineWidth = 1;
    var gx = niceTicks(visLon0, visLon1, Math.max(2, Math.round(pw / 110)));
    var gy = niceTicks(visLat0, visLat1, Math.max(2, Math.round(ph / 70)));
    gx.ticks.forEach(function (v) { var x = Math.round(X(v)) + 0.5; ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, T + ph); ctx.stroke(); });
    gy.ticks.forEach(function (v) { var y = Math.round(Y(v)) + 0.5; ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke(); });

    // points, highest level drawn last (on top)
    var order = pts.slice().sort(function (a, b) { return (a.alarm_level || -1) - (b.alarm_level || -1); });
    order.forEach(function (p) {
      var x = X(Number(p.longitude)), y = Y(Number(p.latitude));
      var level = p.alarm_level;
      var r = level >= 3 ? 7 : level >= 1 ? 6 : 5;
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = levelColour(level);
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
      canvas._hits.push({ x: x, y: y, p: p });
    });
    ctx.restore();

    // frame and labels
    ctx.strokeStyle = "#b8c6d4";
    ctx.lineWidth = 1;
    ctx.strokeRect(L + 0.5, T + 0.5, pw - 1, ph - 1);
    ctx.fillStyle = "#55657a";
    ctx.font = FONT;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    gx.ticks.forEach(function (v) {
      var x = X(v);
      if (x >= L + 20 && x <= L + pw - 20) ctx.fillText(degLabel(v, "E", "W", gx.step), x, T + ph + 5);
    });
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    gy.ticks.forEach(function (v) {
      var y = Y(v);
      if (y >= T + 8 && y <= T + ph - 8) ctx.fillText(degLabel(v, "N", "S", gy.step), L - 6, y);
    });

    // scale bar above the frame, right (metres per pixel: one degree of latitude ~ 111.32 km)
    var mPerPx = 111320 / scale;
    var nice = niceStep(mPerPx * pw / 6, 1);
    var px = nice / mPerPx;
    var sx = L + pw - px, sy = T - 7;
    ctx.strokeStyle = "#334455";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(sx, sy - 5); ctx.lineTo(sx, sy); ctx.lineTo(sx + px, sy); ctx.lineTo(sx + px, sy - 5);
    ctx.stroke();
    ctx.fillStyle = "#334455";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(nice >= 1000 ? tickLabel(nice / 1000) + " km" : tickLabel(nice) + " m", sx - 6, sy - 2);
    ctx.textAlign = "left";
    ctx.fillText("lon/lat, equirectangular · 经纬度", L, sy - 2);
  }

  function mapHit(canvas, ev) {
    var rect = canvas.getBoundingClientRect();
    var x = ev.clientX - rect.left, y = ev.clientY - rect.top;
    var best = null, bestD = 100;
    (canvas._hits || []).forEach(function (hit) {
      var d = (hit.x - x) * (hit.x - x) + (hit.y - y) * (hit.y - y);
      if (d <= bestD) { bestD = d; best = hit; }
    });
    return best;
  }

  function legend() {
    var entries = [[0, "Normal", "正常"], [1, "Level 1", "一级"], [2, "Level 2", "二级"], [3, "Level 3", "三级"],
                   [null, "No alarm data", "无报警数据"]];
    put("map-legend", entries.map(function (e) {
      return h("span", null, h("span", { class: "dot", style: "background:" + levelColour(e[0]) }), e[1] + " ",
               h("span", { class: "zh", text: e[2] }));
    }).concat([h("span", null, "Click a point to open the vehicle · 点击查看车辆")]));
  }

  // ------------------------------------------------------------------ time plots

  function drawPlot(canvas, pts, opt) {
    var c = setupCanvas(canvas), ctx = c.ctx, W = c.w, H = c.h;
    var L = 58, R = 14, T = 30, B = 44;
    var pw = W - L - R, ph = H - T - B;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, W, H);
    ctx.font = FONT_BOLD;
    ctx.fillStyle = "#1d2733";
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    ctx.fillText(opt.title, 10, 19);
    var good = pts.filter(function (p) { return p.v !== null && p.v !== undefined && isFinite(p.v); });
    canvas.dataset.points = String(good.length);
    markBox(canvas);
    ctx.strokeStyle = "#b8c6d4";
    ctx.lineWidth = 1;
    ctx.strokeRect(L + 0.5, T + 0.5, pw - 1, ph - 1);
    if (!good.length) {
      ctx.fillStyle = "#667585";
      ctx.font = FONT;
      ctx.textAlign = "center";
      ctx.fillText(opt.empty || "No data in this period · 无数据", L + pw / 2, T + ph / 2);
      return;
    }
    var last = good[good.length - 1];
    ctx.textAlign = "right";
    ctx.font = FONT;
    ctx.fillStyle = opt.colour;
    ctx.fillText("last " + fmtNum(last.v, opt.digits) + " " + opt.unit, W - R, 19);

    var vs = good.map(function (p) { return p.v; });
    var lo = Math.min.apply(null, vs), hi = Math.max.apply(null, vs);
    if (opt.zero) lo = Math.min(0, lo);
    var yt = niceTicks(lo, hi, Math.max(3, Math.round(ph / 45)));
    if (opt.clamp) { yt.lo = Math.max(opt.clamp[0], yt.lo); yt.hi = Math.min(opt.clamp[1], yt.hi);
                     if (yt.hi <= yt.lo) { yt.lo = opt.clamp[0]; yt.hi = opt.clamp[1]; }
                     yt.ticks = yt.ticks.filter(function (v) { return v >= yt.lo && v <= yt.hi; }); }
    var t0 = pts[0].t, t1 = pts[pts.length - 1].t;
    if (t1 - t0 < 60000) { var mid = (t0 + t1) / 2; t0 = mid - 30000; t1 = mid + 30000; }
    var padT = (t1 - t0) * 0.02;
    t0 -= padT; t1 += padT;
    function X(t) { return L + (t - t0) / (t1 - t0) * pw; }
    function Y(v) { return T + ph - (v - yt.lo) / (yt.hi - yt.lo) * ph; }

    // grid and y ticks
    ctx.font = FONT;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    yt.ticks.forEach(function (v) {
      var y = Math.round(Y(v)) + 0.5;
      ctx.strokeStyle = "#edf1f5";
      ctx.beginPath(); ctx.moveTo(L + 1, y); ctx.lineTo(L + pw - 1, y); ctx.stroke();
      ctx.strokeStyle = "#8795a5";
      ctx.beginPath(); ctx.moveTo(L - 4, y); ctx.lineTo(L, y); ctx.stroke();
      ctx.fillStyle = "#55657a";
      ctx.fillText(tickLabel(v), L - 7, y);
    });
    // x ticks
    var xt = timeTicks(t0, t1, Math.max(2, Math.floor(pw / 60)));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    xt.ticks.forEach(function (t) {
      var x = Math.round(X(t)) + 0.5;
      ctx.strokeStyle = "#edf1f5";
      ctx.beginPath(); ctx.moveTo(x, T + 1); ctx.lineTo(x, T + ph - 1); ctx.stroke();
      ctx.strokeStyle = "#8795a5";
      ctx.beginPath(); ctx.moveTo(x, T + ph); ctx.lineTo(x, T + ph + 4); ctx.stroke();
      ctx.fillStyle = "#55657a";
      ctx.fillText(timeTickLabel(t, xt.step, t1 - t0), x, T + ph + 7);
    });
    // axis titles
    ctx.fillStyle = "#46556a";
    ctx.fillText("Time (UTC+8) · 时间", L + pw / 2, T + ph + 24);
    ctx.save();
    ctx.translate(14, T + ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(opt.axis + " (" + opt.unit + ")", 0, 0);
    ctx.restore();

    // the line; broken where data are missing or there is a gap
    var dts = [];
    for (var i = 1; i < pts.length; i++) dts.push(pts[i].t - pts[i - 1].t);
    dts.sort(function (a, b) { return a - b; });
    var typical = dts.length ? dts[Math.floor(dts.length / 2)] : 10000;
    var maxGap = Math.max(3 * typical, 60000);
    ctx.save();
    ctx.beginPath();
    ctx.rect(L, T - 4, pw, ph + 8);
    ctx.clip();
    ctx.strokeStyle = opt.colour;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    var pen = false, prevT = null;
    pts.forEach(function (p) {
      var ok = p.v !== null && p.v !== undefined && isFinite(p.v);
      if (!ok) { pen = false; return; }
      var x = X(p.t), y = Y(p.v);
      if (pen && prevT !== null && p.t - prevT <= maxGap) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      pen = true;
      prevT = p.t;
    });
    ctx.stroke();
    if (good.length <= 120) {
      ctx.fillStyle = opt.colour;
      good.forEach(function (p) { ctx.beginPath(); ctx.arc(X(p.t), Y(p.v), 2.6, 0, 2 * Math.PI); ctx.fill(); });
    }
    // alarm marks along the bottom
    var alarmed = false;
    pts.forEach(function (p) {
      if (!(p.alarm > 0)) return;
      alarmed = true;
      var x = X(p.t), y = T + ph - 1;
      ctx.fillStyle = levelColour(p.alarm);
      ctx.beginPath(); ctx.moveTo(x, y - 7); ctx.lineTo(x - 4, y); ctx.lineTo(x + 4, y); ctx.closePath(); ctx.fill();
    });
    ctx.restore();
    if (alarmed) {
      ctx.fillStyle = LEVEL_COLOURS[3];
      ctx.textAlign = "right";
      ctx.textBaseline = "top";
      ctx.fillText("▲ alarm 报警", W - R, T + ph + 24);
    }
  }

  var PLOTS = [
    { id: "plot-speed", key: "speed_kmh", title: "Speed · 车速", axis: "Speed", unit: "km/h", colour: "#1565c0", zero: true, digits: 1 },
    { id: "plot-soc", key: "soc_pct", title: "State of charge · SOC 电量", axis: "SOC", unit: "%", colour: "#2e7d32", clamp: [0, 100], digits: 0 },
    { id: "plot-voltage", key: "total_voltage_v", title: "Total voltage · 总电压", axis: "Voltage", unit: "V", colour: "#6a1b9a", digits: 1 }
  ];

  function drawPlots() {
    var rows = state.series || [];
    PLOTS.forEach(function (p) {
      var pts = rows.map(function (r) {
        var v = r[p.key];
        return { t: Date.parse(r.collected_at), v: v === null || v === undefined ? null : Number(v), alarm: r.alarm_level };
      });
      drawPlot($(p.id), pts, p);
    });
  }

  // ------------------------------------------------------------------ vehicle page

  function loadVehicle(vin) {
    put("v-vin", vin);
    put("v-badges", null);
    $("v-error").hidden = true;
    ["v-registry", "v-latest", "v-life", "v-quality", "v-hazards", "v-alarm-levels", "v-alarms", "v-logins",
     "v-odometer"].forEach(function (id) { put(id, "Loading… 加载中"); });
    state.series = [];
    drawPlots();
    if (!state.token) { needToken("No API token. 未设置令牌。"); return Promise.resolve(); }
    return api("/api/v1/vehicles/" + encodeURIComponent(vin) + "/archive").then(function (a) {
      if (state.vin !== vin) return;
      renderArchive(a);
      return loadSeries(a);
    }, function (e) {
      var text = e.status === 404 ? "No record of vehicle " + vin + " on this node. 未找到该车辆。" : errorText(e);
      message("v-error", "error", text);
      ["v-registry", "v-latest", "v-life", "v-quality", "v-hazards", "v-alarm-levels", "v-alarms", "v-logins",
       "v-odometer"].forEach(function (id) { put(id, "–"); });
    });
  }

  function renderArchive(a) {
    var reg = a.registry, lt = a.latest, dq = a.data_quality_30d || {};
    put("v-badges", [lt ? onlineBadge(lt.received_at) : h("span", { class: "badge off", text: "never seen 未接入" }), " ",
                     lt ? levelBadge(lt.alarm_level) : null]);
    put("v-registry", reg ? dl([
      [bi("Sector", "行业"), reg.sector],
      [bi("Region", "地区"), reg.region_code],
      [bi("Owner", "所属企业"), reg.owner],
      [bi("Model", "车型"), reg.model],
      [bi("Plate", "车牌"), reg.plate],
      [bi("Updated", "更新"), fmtTime(reg.updated_at)]
    ]) : h("div", { class: "hazard" }, bi("Not registered: its data are stored but never forwarded.", "未登记车辆")));
    put("v-latest", lt ? dl([
      [bi("Collected", "采集时间"), fmtTime(lt.collected_at)],
      [bi("Received", "接收时间"), [fmtTime(lt.received_at), " ", h("span", { class: "muted", text: ago(lt.received_at) })]],
      [bi("State", "车辆状态"), lt.vehicle_state],
      [bi("Charging", "充电状态"), lt.charging_state],
      [bi("Speed", "车速"), withUnit(lt.speed_kmh, "km/h", 1)],
      ["SOC", withUnit(lt.soc_pct, "%")],
      [bi("Voltage", "总电压"), withUnit(lt.total_voltage_v, "V", 1)],
      [bi("Current", "总电流"), withUnit(lt.total_current_a, "A", 1)],
      [bi("Odometer", "里程"), withUnit(lt.odometer_km, "km", 1)],
      [bi("Position", "位置"), lt.longitude === null || lt.longitude === undefined ? "–" :
        fmtNum(lt.longitude, 6) + ", " + fmtNum(lt.latitude, 6) + (lt.position_valid === false ? " (invalid)" : "")],
      [bi("Alarm", "报警"), [levelBadge(lt.alarm_level), " ", (lt.alarm_flags || []).join(", ")]]
    ]) : h("div", { class: "muted" }, bi("No realtime data yet", "暂无实时数据")));
    var logins = (a.logins || []).filter(function (l) { return l.event === "login"; });
    put("v-life", dl([
      [bi("First data", "首次数据"), fmtTime(a.first_seen)],
      [bi("Last data", "最近数据"), fmtTime(a.last_seen)],
      [bi("Data frames", "数据帧"), fmtNum(a.frames)],
      [bi("Logins", "登入次数"), fmtNum(logins.length) + (logins.length >= 50 ? "+" : "")],
      [bi("Last login", "最近登入"), logins.length ? fmtTime(logins[0].received_at) : "–"],
      [bi("Alarms", "报警次数"), fmtNum((a.alarms && a.alarms.recent || []).length)]
    ]));
    var oor = dq.out_of_range || {};
    var oorText = Object.keys(oor).map(function (k) { return k + ": " + oor[k]; }).join(", ") || "none 无";
    put("v-quality", dl([
      [bi("Frames", "帧数"), fmtNum(dq.frames) + " of " + fmtNum(dq.expected) + " expected"],
      [bi("Completeness", "完整率"), dq.completeness === null || dq.completeness === undefined ? "–" : fmtNum(dq.completeness * 100, 1) + " %"],
      [bi("Missing", "缺失"), fmtNum(dq.missing)],
      [bi("Late", "延迟"), fmtNum(dq.late)],
      [bi("Reissued", "补发"), fmtNum(dq.reissued)],
      [bi("Interruptions", "中断"), fmtNum(dq.interruptions) + " (" + fmtNum(dq.interrupted_seconds) + " s)"],
      [bi("Invalid / abnormal", "无效/异常"), fmtNum(dq.frames_with_invalid) + " / " + fmtNum(dq.frames_with_abnormal) + " frames"],
      [bi("Out of range", "超范围"), oorText]
    ]));
    var hz = a.hazards || [];
    put("v-hazards", hz.length ? hz.map(function (x) {
      if (x.kind === "long_offline")
        return h("div", { class: "hazard" }, bi("Long offline", "长期离线"), ": last seen " +
                 (x.last_seen ? fmtTime(x.last_seen) : "never") + " (limit " + x.limit_days + " days)");
      if (x.kind === "frequent_alarms")
        return h("div", { class: "hazard" }, bi("Frequent alarms", "频繁报警"), ": " + x.alarms + " alarms in " +
                 x.window_hours + " h");
      return h("div", { class: "hazard", text: JSON.stringify(x) });
    }) : h("div", { class: "none" }, bi("No hazard found", "未发现隐患")));
    var byLevel = (a.alarms && a.alarms.by_level) || {};
    renderLevels("v-alarm-levels", Object.keys(byLevel).map(function (k) { return { key: k, alarms: byLevel[k] }; }),
                 { idPrefix: "v-alarm-level-" });
    var vin = a.vin;
    var msg = h("div", { class: "message", hidden: true });
    put("v-alarms", [msg, alarmTable((a.alarms && a.alarms.recent) || [], msg, function () {
      return api("/api/v1/vehicles/" + encodeURIComponent(vin) + "/archive").then(function (b) {
        if (state.vin === vin) { var keep = msg.textContent, kind = msg.className; renderArchive(b);
          var m2 = $("v-alarms").querySelector(".message"); m2.className = kind; m2.textContent = keep; m2.hidden = !keep; }
      });
    })]);
    put("v-logins", table([
      { label: bi("Event", "事件"), key: "event" },
      { label: bi("Serial", "流水号"), key: "serial", num: true },
      { label: "ICCID", key: "iccid", mono: true },
      { label: bi("Collected", "采集"), render: function (l) { return fmtTime(l.collected_at); } },
      { label: bi("Received", "接收"), render: function (l) { return fmtTime(l.received_at); } },
      { label: bi("Peer", "来源"), key: "peer", mono: true }
    ], a.logins, bi("No logins", "无登入记录")));
    put("v-odometer", table([
      { label: bi("Day", "日期"), key: "day" },
      { label: bi("Odometer km", "里程"), num: true, render: function (r) { return fmtNum(r.odometer_km, 1); } }
    ], (a.odometer_history || []).slice().reverse(), bi("No odometer data", "无里程数据")));
  }

  function loadSeries(a) {
    var vin = a.vin;
    var period = Number($("v-period").value) || 86400;
    var end = a.last_seen ? Date.parse(a.last_seen) + 1000 : Date.now();
    var start = end - period * 1000;
    var limit = 20000;
    if (!a.last_seen) {
      state.series = [];
      $("v-series-note").textContent = "no realtime data 无实时数据";
      drawPlots();
      return Promise.resolve();
    }
    $("v-series-note").textContent = "loading…";
    return api("/api/v1/vehicles/" + encodeURIComponent(vin) + "/series" +
               q({ from: new Date(start).toISOString(), to: new Date(end).toISOString(), limit: limit }))
      .then(function (rows) {
        if (state.vin !== vin) return;
        state.series = rows;
        var note = rows.length + " points · " + (rows.length ? fmtTime(rows[0].collected_at) + " – " +
                   fmtTime(rows[rows.length - 1].collected_at) : "none") + " (UTC+8), period ending at the last frame";
        if (rows.length >= limit) note += " · only the first " + limit + " points shown, choose a shorter period";
        $("v-series-note").textContent = note;
        drawPlots();
      }, function (e) {
        state.series = [];
        $("v-series-note").textContent = errorText(e);
        drawPlots();
      });
  }

  // ------------------------------------------------------------------ routing

  function hashParams() { return new URLSearchParams(location.hash.replace(/^#/, "")); }

  function route() {
    var vin = (hashParams().get("vin") || "").trim().toUpperCase();
    if (vin) {
      state.view = "vehicle";
      state.vin = vin;
      $("view-overview").hidden = true;
      $("view-vehicle").hidden = false;
      document.title = vin + " · NEV relay dashboard";
      window.scrollTo(0, 0);
      return loadVehicle(vin);
    }
    state.view = "overview";
    state.vin = null;
    $("view-vehicle").hidden = true;
    $("view-overview").hidden = false;
    document.title = "NEV relay · Monitoring dashboard 监控平台";
    return loadOverview();
  }

  function takeTokenFromAddress() {
    var hp = hashParams(), sp = new URLSearchParams(location.search);
    var token = hp.get("token") || sp.get("token");
    if (!token) return;
    storeToken(token.trim());
    hp.delete("token");
    sp.delete("token");
    var search = sp.toString(), hash = hp.toString();
    try {
      history.replaceState(null, "", location.pathname + (search ? "?" + search : "") + (hash ? "#" + hash : ""));
    } catch (e) { /* not fatal */ }
  }

  function init() {
    takeTokenFromAddress();
    state.token = storedToken();
    $("token-input").value = state.token;
    legend();

    $("token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      storeToken($("token-input").value.trim());
      banner(null, null);
      $("token-input").classList.remove("need");
      route();
    });
    $("token-clear").addEventListener("click", function () {
      storeToken("");
      $("token-input").value = "";
      needToken("Token forgotten. 令牌已清除。");
    });
    $("refresh").addEventListener("click", function () { route(); });
    $("alarm-period").addEventListener("change", loadAlarmLevels);
    $("vehicle-filter").addEventListener("change", loadVehicles);
    $("v-period").addEventListener("change", function () {
      if (state.vin) api("/api/v1/vehicles/" + encodeURIComponent(state.vin) + "/archive").then(loadSeries, function (e) {
        $("v-series-note").textContent = errorText(e);
      });
    });
    document.querySelectorAll(".nav a").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        var target = a.dataset.section;
        var go = function () { var t = $(target); if (t) t.scrollIntoView({ behavior: "smooth", block: "start" }); };
        if (state.view !== "overview") { location.hash = ""; setTimeout(go, 50); } else go();
      });
    });
    var map = $("map");
    map.addEventListener("click", function (ev) {
      var hit = mapHit(map, ev);
      if (hit) location.hash = "vin=" + encodeURIComponent(hit.p.vin);
    });
    map.addEventListener("mousemove", function (ev) {
      var hit = mapHit(map, ev);
      map.title = hit ? hit.p.vin + " · level " + (hit.p.alarm_level === null ? "–" : hit.p.alarm_level) +
        " · " + fmtNum(hit.p.speed_kmh, 1) + " km/h" : "";
      map.style.cursor = hit ? "pointer" : "crosshair";
    });
    window.addEventListener("hashchange", route);
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        if (state.view === "overview") drawMap($("map"), state.positions);
        else drawPlots();
      }, 150);
    });
    state.timer = setInterval(function () {
      if (state.view === "overview" && $("auto-refresh").checked && !state.loading && document.visibilityState !== "hidden" &&
          state.token && !state.authFailed) loadOverview();
    }, REFRESH_MS);
    route();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
