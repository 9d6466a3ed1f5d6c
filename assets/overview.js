/*
 * Overview page (实例概览), browser side: applies the monitor's WebSocket pushes to the page.
 *
 * The server renders the page once per load (dashapp/ui/layout.py) and hands over a config
 * with the catalog of the page's language, the snapshot and the socket path. From then on
 * every change arrives on the dash-extensions WebSocket component and is applied here with
 * dash_clientside.set_props, only on the components whose props changed.
 *
 * Names, tags and reasons are only ever passed as strings in `children`, which React renders
 * as text, so markup in a name shows literally. This file contains no UI text: every string
 * comes from the catalog.
 */
(function () {
    'use strict';

    // Reconnect after 1, 2, 4, 8 and 16 s, then every 30 s forever: a wall screen never gives up.
    var RECONNECT_DELAYS_S = [1, 2, 4, 8, 16];
    var RECONNECT_EVERY_S = 30;
    // The hub sends a heartbeat every 5 s, so three missed ones mean the data can no longer be trusted.
    var STALE_AFTER_MS = 15000;
    // A handshake that neither opens nor fails (a stopped server process) is abandoned after this.
    var CONNECT_TIMEOUT_MS = 10000;
    // More than BURST_LIMIT changes, each within BURST_GAP_MS of the previous, share one toast.
    var BURST_GAP_MS = 1000;
    var BURST_LIMIT = 3;
    var TOAST_MS = 8000;
    var TOAST_MAX = 6;
    var THEME_KEY = 'dbmon.theme';
    var STATUS_RANK = {abnormal: 0, degraded: 1, pending: 2, maintenance: 3, running: 4};
    var DETAIL_ORDER = ['version', 'role', 'uptime', 'uptime_s', 'connections', 'threads_connected',
                        'connected_clients', 'max_connections', 'memory', 'memory_bytes', 'used_memory',
                        'read_only', 'replica', 'in_recovery'];

    var page = null;       // state of the rendered page, replaced when the page is rendered again
    var applied = {};      // id -> JSON of the props last set, so unchanged props are never sent again

    // Apply the stored theme before Dash renders, so a dark wall screen never flashes white.
    applyTheme(readTheme());

    /*
     * Frames of the page's own socket are handled here, not through the WebSocket component's
     * `message` prop, for two reasons:
     * - Dash merges queued runs of one callback and keeps only the newest prop value, so two
     *   frames that arrive back to back (a change and its summary) could reach a `message`
     *   callback as one.
     * - dash-renderer appends every prop change that a component makes to its undo history,
     *   which is never trimmed (checked in dash 4.4.1). Each frame set as `message` would stay
     *   in memory for as long as the page is open, which is days on a wall screen.
     * So the component's onmessage handler is never installed on this socket; its `state` prop
     * (open, closed) still drives the connection callbacks.
     */
    var NativeWebSocket = window.WebSocket;
    var inbox = [];
    var pageSocket = null;
    var draining = false;

    function drainInbox() {
        draining = false;
        if (page === null) {
            inbox.length = 0;
            return;
        }
        handleFrames(inbox.splice(0, inbox.length));
    }

    function TrackedWebSocket(url, protocols) {
        var socket = protocols === undefined ? new NativeWebSocket(url) : new NativeWebSocket(url, protocols);
        if (page && String(url).indexOf(page.wsBase) === 0) {
            pageSocket = socket;
            Object.defineProperty(socket, 'onmessage', {
                configurable: true,
                get: function () { return null; },
                set: function () { /* frames go to the inbox below instead */ }
            });
            socket.addEventListener('message', function (event) {
                if (socket !== pageSocket) {
                    return;
                }
                inbox.push(event.data);
                if (!draining) {
                    draining = true;
                    setTimeout(drainInbox, 0);
                }
            });
        }
        return socket;
    }
    TrackedWebSocket.prototype = NativeWebSocket.prototype;
    ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'].forEach(function (name) {
        TrackedWebSocket[name] = NativeWebSocket[name];
    });
    window.WebSocket = TrackedWebSocket;

    // ---- small helpers -------------------------------------------------------------------

    function text(key, values) {
        var template = page.catalog[key];
        if (template === undefined) {
            return key;
        }
        return template.replace(/\{(\w+)\}/g, function (match, name) {
            return values && values[name] !== undefined ? String(values[name]) : match;
        });
    }

    // Set props only when they differ from the last ones set on that component.
    function patch(id, props) {
        var changed = {};
        var any = false;
        Object.keys(props).forEach(function (prop) {
            var slot = id + '\u0000' + prop;
            var json = JSON.stringify(props[prop]);
            if (applied[slot] !== json) {
                applied[slot] = json;
                changed[prop] = props[prop];
                any = true;
            }
        });
        if (any) {
            window.dash_clientside.set_props(id, changed);
        }
    }

    /*
     * Each set_props call makes the Dash renderer re-check every component on the page, so with
     * 1,000 cards a call per card turns quadratic: a page never finished loading, and a network
     * cut that changes hundreds of cards at once took many seconds to show. The parts of a card
     * (status, problem, latency, last check, order and visibility) are therefore written to the
     * DOM directly, batched per animation frame. React leaves them alone because Dash never
     * changes the props of those elements after the server rendered them; only a card's details
     * list still goes through set_props.
     */
    // element id + aspect ("text", "class", "layout") -> {id, apply}: the newest write wins
    var domWrites = {};
    var domFrame = null;

    function writeDom(id, aspect, apply) {
        domWrites[id + '\u0000' + aspect] = {id: id, apply: apply};
        if (domFrame === null) {
            domFrame = window.requestAnimationFrame(flushDom);
        }
    }

    function flushDom() {
        domFrame = null;
        var waiting = {};
        Object.keys(domWrites).forEach(function (slot) {
            var write = domWrites[slot];
            var node = document.getElementById(write.id);
            if (node) {
                write.apply(node);
            } else {
                waiting[slot] = write;  // not drawn yet on a first render: retry next frame
            }
        });
        domWrites = waiting;
        if (Object.keys(waiting).length > 0 && page !== null) {
            domFrame = window.requestAnimationFrame(flushDom);
        }
    }

    function setText(id, value) {
        writeDom(id, 'text', function (node) {
            if (node.textContent !== value) {
                node.textContent = value;
            }
        });
    }

    function setClass(id, value) {
        writeDom(id, 'class', function (node) {
            if (node.className !== value) {
                node.className = value;
            }
        });
    }

    function pad(number) {
        return number < 10 ? '0' + number : String(number);
    }

    // Format a time in the browser's time zone: HH:MM:SS today, with the date on other days.
    function formatTime(value) {
        if (value === null || value === undefined) {
            return null;
        }
        var moment = new Date(value);
        if (isNaN(moment.getTime())) {
            return null;
        }
        var clock = pad(moment.getHours()) + ':' + pad(moment.getMinutes()) + ':' + pad(moment.getSeconds());
        if (moment.toDateString() === new Date().toDateString()) {
            return clock;
        }
        return moment.getFullYear() + '-' + pad(moment.getMonth() + 1) + '-' + pad(moment.getDate()) + ' ' + clock;
    }

    function formatDuration(seconds) {
        var total = Math.floor(seconds);
        var days = Math.floor(total / 86400);
        var hours = Math.floor(total % 86400 / 3600);
        var minutes = Math.floor(total % 3600 / 60);
        if (days > 0) {
            return text('ui.duration.days', {days: days, hours: hours});
        }
        if (hours > 0) {
            return text('ui.duration.hours', {hours: hours, minutes: minutes});
        }
        return text('ui.duration.minutes', {minutes: minutes, seconds: total % 60});
    }

    function formatBytes(bytes) {
        var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
        var value = bytes;
        var unit = 0;
        while (value >= 1024 && unit < units.length - 1) {
            value /= 1024;
            unit += 1;
        }
        return (unit === 0 ? String(value) : value.toFixed(1)) + ' ' + units[unit];
    }

    function formatDetail(key, value) {
        if (value === null || value === undefined) {
            return text('ui.unavailable');
        }
        if (typeof value === 'boolean') {
            return text(value ? 'ui.yes' : 'ui.no');
        }
        if (typeof value === 'number' && key.indexOf('uptime') === 0) {
            return formatDuration(value);
        }
        if (typeof value === 'number' && key.indexOf('memory') !== -1) {
            return formatBytes(value);
        }
        if (typeof value === 'object') {
            return JSON.stringify(value);
        }
        return String(value);
    }

    function element(type, props) {
        return {type: type, namespace: 'dash_html_components', props: props};
    }

    // ---- cards ---------------------------------------------------------------------------

    function renderDetails(details) {
        var keys = Object.keys(details || {});
        if (keys.length === 0) {
            return [element('Dd', {children: text('ui.card.no_details'), className: 'detail-empty'})];
        }
        keys.sort(function (a, b) {
            var ia = DETAIL_ORDER.indexOf(a);
            var ib = DETAIL_ORDER.indexOf(b);
            ia = ia === -1 ? DETAIL_ORDER.length : ia;
            ib = ib === -1 ? DETAIL_ORDER.length : ib;
            return ia !== ib ? ia - ib : (a < b ? -1 : 1);
        });
        var rows = [];
        keys.forEach(function (key) {
            var label = page.catalog['ui.detail.' + key] !== undefined ? text('ui.detail.' + key) : key;
            rows.push(element('Dt', {children: label}));
            rows.push(element('Dd', {children: formatDetail(key, details[key])}));
        });
        return rows;
    }

    function latencyText(latency) {
        return latency === null || latency === undefined ? '—' : text('ui.card.latency_value', {value: latency.toFixed(1)});
    }

    function renderMetrics(instance) {
        var key = instance.key;
        setText('card-' + key + '-latency', latencyText(instance.latency_ms));
        setText('card-' + key + '-checked', formatTime(instance.last_check) || text('ui.card.never_checked'));
    }

    // Details sit in a closed <details> box on most cards, so they are rendered when it opens.
    function detailsOpen(key) {
        var list = document.getElementById('card-' + key + '-details');
        return Boolean(list && list.parentElement && list.parentElement.open);
    }

    function renderDetailsOf(instance) {
        patch('card-' + instance.key + '-details', {children: renderDetails(instance.details)});
    }

    function onDetailsToggle(event) {
        var box = event.target;
        if (!page || !box || box.tagName !== 'DETAILS' || !box.open) {
            return;
        }
        var list = box.querySelector('.card-details');
        var match = list && /^card-(.+)-details$/.exec(list.id);
        if (match && page.instances[match[1]]) {
            renderDetailsOf(page.instances[match[1]]);
        }
    }
    // The toggle event does not bubble, so it is caught on the way down.
    document.addEventListener('toggle', onDetailsToggle, true);

    // Bring one card up to date with an InstanceState.to_dict(); unchanged parts are skipped.
    function renderCard(instance) {
        var key = instance.key;
        var status = instance.status;
        var problem = status !== 'running' && Boolean(instance.failure || instance.reason);

        setClass('card-' + key + '-body', 'instance-card status-' + status);
        setText('card-' + key + '-status', text('status.' + status));
        setClass('card-' + key + '-status', 'status-badge status-' + status);
        setClass('card-' + key + '-problem', problem ? 'card-problem' : 'card-problem d-none');
        setText('card-' + key + '-failure', instance.failure ? text('failure.' + instance.failure) : '');
        setText('card-' + key + '-reason', instance.reason || '');
        setText('card-' + key + '-since', sinceText(instance));
        if (detailsOpen(key)) {
            renderDetailsOf(instance);
        }
        renderMetrics(instance);
    }

    // The start of a problem, shown only inside the problem box of a card that has one.
    function sinceText(instance) {
        var problem = instance.status !== 'running' && Boolean(instance.failure || instance.reason);
        return problem && instance.since ? text('ui.card.since', {time: formatTime(instance.since)}) : '';
    }


    // Show, hide and order the cards; CSS `order` moves a card without re-rendering the grid.
    function layoutCards() {
        var filters = page.filters;
        var search = (filters.search || '').trim().toLowerCase();
        var shown = 0;
        page.keys.forEach(function (key, index) {
            var instance = page.instances[key];
            var visible = (filters.types.length === 0 || filters.types.indexOf(instance.type) !== -1) &&
                (filters.tags.length === 0 || instance.tags.some(function (tag) {
                    return filters.tags.indexOf(tag) !== -1;
                })) &&
                (filters.statuses.length === 0 || filters.statuses.indexOf(instance.status) !== -1) &&
                (search === '' || instance.name.toLowerCase().indexOf(search) !== -1);
            var rank = filters.abnormalFirst ? STATUS_RANK[instance.status] || 0 : 0;
            var order = String(rank * 100000 + index);
            var display = visible ? '' : 'none';
            writeDom('card-' + key, 'layout', function (node) {
                if (node.style.order !== order) {
                    node.style.order = order;
                }
                if (node.style.display !== display) {
                    node.style.display = display;
                }
            });
            shown += visible ? 1 : 0;
        });
        patch('cards-count', {children: text('ui.filter.shown', {shown: shown, total: page.keys.length})});
        var empty = page.keys.length === 0 ? text('ui.empty') : (shown === 0 ? text('ui.filter.no_match') : '');
        patch('cards-empty', {children: empty});
    }

    function updateTitle() {
        var abnormal = page.keys.filter(function (key) {
            return page.instances[key].status === 'abnormal';
        }).length;
        document.title = abnormal > 0 ? text('ui.title_with_count', {count: abnormal}) : text('ui.title');
    }

    // ---- summary and charts --------------------------------------------------------------

    function chartLayout(extra) {
        var dark = document.documentElement.getAttribute('data-bs-theme') === 'dark';
        var layout = {
            paper_bgcolor: 'rgba(0,0,0,0)',
            plot_bgcolor: 'rgba(0,0,0,0)',
            font: {color: dark ? '#dee2e6' : '#212529', size: 15},
            margin: {l: 40, r: 10, t: 10, b: 40},
            legend: {orientation: 'h', y: -0.12},
            uirevision: 'overview'
        };
        Object.keys(extra).forEach(function (name) {
            layout[name] = extra[name];
        });
        return layout;
    }

    function renderCharts(summary) {
        var order = page.config.status_order;
        var colors = page.config.status_colors;
        // Degraded is not probed for yet: list it only when some instance has it.
        var present = order.filter(function (status) {
            return (summary.by_status[status] || 0) > 0 || status !== 'degraded';
        });
        // A zero slice would still print its "0" label, so the donut shows only non-empty ones.
        var slices = present.filter(function (status) {
            return (summary.by_status[status] || 0) > 0;
        });

        patch('chart-status-share', {figure: {
            data: [{
                type: 'pie',
                hole: 0.55,
                sort: false,
                direction: 'clockwise',
                labels: slices.map(function (status) { return text('status.' + status); }),
                values: slices.map(function (status) { return summary.by_status[status]; }),
                marker: {colors: slices.map(function (status) { return colors[status]; })},
                textinfo: 'value',
                textfont: {size: 18},
                hovertemplate: '%{label}: %{value}<extra></extra>'
            }],
            layout: chartLayout({
                margin: {l: 10, r: 10, t: 10, b: 10},
                annotations: [{text: String(summary.total), showarrow: false, font: {size: 34}}]
            })
        }});

        var types = Object.keys(summary.by_type);
        var tallest = Math.max.apply(null, [0].concat(types.map(function (type) {
            return Object.keys(summary.by_type[type]).reduce(function (sum, status) {
                return sum + summary.by_type[type][status];
            }, 0);
        })));
        var typeLabels = types.map(function (type) {
            return page.catalog['ui.type.' + type] !== undefined ? text('ui.type.' + type) : type;
        });
        patch('chart-by-type', {figure: {
            data: present.map(function (status) {
                return {
                    type: 'bar',
                    name: text('status.' + status),
                    x: typeLabels,
                    y: types.map(function (type) { return summary.by_type[type][status] || 0; }),
                    marker: {color: colors[status]},
                    hovertemplate: '%{x} · ' + text('status.' + status) + ': %{y}<extra></extra>'
                };
            }),
            layout: chartLayout({
                barmode: 'stack',
                legend: {orientation: 'h', y: -0.15, traceorder: 'normal'},
                // Counts are whole numbers: one tick per instance while the bars are short.
                yaxis: tallest <= 10 ? {rangemode: 'tozero', dtick: 1} : {rangemode: 'tozero', tickformat: 'd'}
            })
        }});
    }

    // NOTE: dash-renderer appears to keep each set_props change here in its never-trimmed undo
    // history: about 0.2 KiB of heap per batch of changes (bench/page_load.py). Heartbeats do not
    // come here, so an idle page does not grow.
    function renderSummary(summary) {
        page.summary = summary;
        patch('summary-total', {children: String(summary.total)});
        ['running', 'abnormal', 'pending', 'maintenance'].forEach(function (status) {
            patch('summary-' + status, {children: String(summary.by_status[status] || 0)});
        });
        renderCharts(summary);
    }

    // ---- toasts --------------------------------------------------------------------------

    function renderToasts() {
        patch('toasts', {children: page.toasts.items.map(function (toast) {
            return element('Div', {
                id: toast.id,
                className: 'toast-item status-' + toast.status,
                role: 'status',
                children: toast.message
            });
        })});
    }

    function removeToast(id) {
        page.toasts.items = page.toasts.items.filter(function (toast) {
            return toast.id !== id;
        });
        renderToasts();
    }

    function addToast(message, status) {
        var toasts = page.toasts;
        toasts.counter += 1;
        var toast = {id: 'toast-' + page.generation + '-' + toasts.counter, message: message, status: status};
        toasts.items.push(toast);
        while (toasts.items.length > TOAST_MAX) {
            toasts.items.shift();
        }
        schedule(function () { removeToast(toast.id); }, TOAST_MS);
        return toast;
    }

    // Toast one change; once a burst passes BURST_LIMIT, its toasts collapse into one counter.
    function toastChange(name, status) {
        var toasts = page.toasts;
        var now = Date.now();
        var burst = toasts.burst;
        if (!burst || now - burst.lastAt > BURST_GAP_MS) {
            burst = toasts.burst = {lastAt: now, count: 0, ids: [], summary: null};
        }
        burst.lastAt = now;
        burst.count += 1;

        if (burst.count <= BURST_LIMIT) {
            burst.ids.push(addToast(text('ui.toast.changed', {name: name, status: text('status.' + status)}), status).id);
        } else if (burst.summary === null) {
            toasts.items = toasts.items.filter(function (toast) {
                return burst.ids.indexOf(toast.id) === -1;
            });
            burst.summary = addToast(text('ui.toast.many', {count: burst.count}), 'many');
        } else {
            burst.summary.message = text('ui.toast.many', {count: burst.count});
        }
        page.pending.toasts = true;  // drawn once per batch of frames, by handleFrames
    }

    // ---- staleness -----------------------------------------------------------------------

    function setStale(stale) {
        page.stale = stale;
        patch('overview-root', {className: stale ? 'overview-root is-stale' : 'overview-root'});
        patch('stale-banner', {
            className: stale ? 'stale-banner' : 'stale-banner d-none',
            children: stale ? text('ui.stale.banner', {time: formatTime(page.lastMessageAt)}) : ''
        });
    }

    // ---- messages ------------------------------------------------------------------------

    function sameKeys(instances) {
        if (instances.length !== page.keys.length) {
            return false;
        }
        return instances.every(function (instance) {
            return Object.prototype.hasOwnProperty.call(page.instances, instance.key);
        });
    }

    function applySnapshot(message) {
        if (!sameKeys(message.instances)) {
            // The configuration was reloaded: cards, filters and charts all change, so load anew.
            window.location.reload();
            return;
        }
        message.instances.forEach(function (instance) {
            page.instances[instance.key] = instance;
            renderCard(instance);
        });
        page.pending.summary = message.summary;
        page.pending.layout = true;
        setStale(false);
    }

    function applyChange(message) {
        var instance = message.instance;
        if (!instance || !Object.prototype.hasOwnProperty.call(page.instances, instance.key)) {
            return;  // not on this page: a snapshot with the new set of instances follows a reload
        }
        page.instances[instance.key] = instance;
        renderCard(instance);
        page.pending.layout = true;
        toastChange(message.name, message.current);
    }

    function applyHeartbeat(message) {
        var metrics = message.metrics || {};
        Object.keys(metrics).forEach(function (key) {
            var instance = page.instances[key];
            if (instance) {
                instance.latency_ms = metrics[key].latency_ms;
                instance.last_check = metrics[key].last_check;
                renderMetrics(instance);
            }
        });
    }

    /*
     * Apply a batch of frames, then redraw the summary, charts and card order once. When many
     * instances change at once (a network cut), frames arrive by the hundred, and a chart
     * redrawn per frame would keep the page busy for seconds.
     */
    function handleFrames(frames) {
        page.pending = {summary: null, layout: false, toasts: false};
        frames.forEach(handleFrame);
        var pending = page.pending;
        if (pending.summary !== null) {
            renderSummary(pending.summary);
        }
        if (pending.layout) {
            layoutCards();
            updateTitle();
        }
        if (pending.toasts) {
            renderToasts();
        }
    }

    function handleFrame(data) {
        var message;
        try {
            message = JSON.parse(data);
        } catch (error) {
            console.warn('overview: ignored a socket frame that is not JSON', error);
            return;
        }
        page.lastMessageAt = Date.now();
        if (message.type === 'instances_status_update') {
            applySnapshot(message);
        } else if (message.type === 'instance_status_change') {
            applyChange(message);
        } else if (message.type === 'status_summary_update') {
            page.pending.summary = message.summary;
        } else if (message.type === 'heartbeat') {
            applyHeartbeat(message);
        }
    }

    // ---- connection ----------------------------------------------------------------------

    function reconnectDelay(attempt) {
        return attempt <= RECONNECT_DELAYS_S.length ? RECONNECT_DELAYS_S[attempt - 1] : RECONNECT_EVERY_S;
    }

    function socketUrl(attempt) {
        var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
        page.wsBase = scheme + '//' + window.location.host + page.config.path_prefix + page.config.ws_path;
        // dash-extensions opens a new socket only when `url` changes, so each attempt gets its own.
        return attempt > 0 ? page.wsBase + '?attempt=' + attempt : page.wsBase;
    }

    function renderConnection() {
        var conn = page.connection;
        var state = conn.open ? 'open' : (conn.everOpened || conn.attempt > 0 ? 'closed' : 'connecting');
        patch('connection-indicator', {className: 'connection connection-' + state});
        patch('connection-label', {children: text('ui.connection.' + state)});
        patch('connection-retry', {
            children: !conn.open && conn.attempt > 0 ? text('ui.connection.retrying', {attempt: conn.attempt}) : ''
        });
    }

    function clearTimer(name) {
        if (page.connection[name] !== null) {
            clearTimeout(page.connection[name]);
            page.connection[name] = null;
        }
    }

    function scheduleReconnect() {
        var conn = page.connection;
        if (conn.retryTimer !== null) {
            return;
        }
        clearTimer('handshakeTimer');
        conn.open = false;
        conn.attempt += 1;
        setStale(true);
        renderConnection();
        conn.retryTimer = schedule(function () {
            conn.retryTimer = null;
            window.dash_clientside.set_props('ws', {url: socketUrl(conn.attempt)});
            conn.handshakeTimer = schedule(function () {
                conn.handshakeTimer = null;
                if (!conn.open) {
                    scheduleReconnect();
                }
            }, CONNECT_TIMEOUT_MS);
        }, reconnectDelay(conn.attempt) * 1000);
    }

    function checkFreshness() {
        if (page.connection.open && Date.now() - page.lastMessageAt > STALE_AFTER_MS) {
            // An open socket that stays silent may be half-open (the server host vanished):
            // mark the data stale and open a new socket, whose first frame is a full snapshot.
            console.warn('overview: no message for ' + STALE_AFTER_MS / 1000 + ' s, reconnecting');
            scheduleReconnect();
        }
    }

    // setTimeout bound to this rendering of the page, so a re-render cancels it.
    function schedule(callback, delay) {
        var generation = page.generation;
        return setTimeout(function () {
            if (page && page.generation === generation) {
                callback();
            }
        }, delay);
    }

    // ---- theme ---------------------------------------------------------------------------

    function readTheme() {
        try {
            return window.localStorage.getItem(THEME_KEY) === 'dark' ? 'dark' : 'light';
        } catch (error) {
            return 'light';  // storage blocked by the browser's privacy settings
        }
    }

    function applyTheme(theme) {
        document.documentElement.setAttribute('data-bs-theme', theme);
    }

    // ---- entry points for the Dash callbacks (dashapp/ui/callbacks.py) --------------------

    var generation = 0;

    window.dash_clientside = window.dash_clientside || {};
    window.dash_clientside.overview = {
        // Set the page up from its config; return the socket URL, which opens the socket.
        start: function (config) {
            if (page !== null) {
                clearInterval(page.freshnessTimer);
            }
            generation += 1;
            applied = {};
            inbox.length = 0;
            page = {
                generation: generation,
                config: config,
                catalog: config.catalog,
                keys: config.instances.map(function (instance) { return instance.key; }),
                instances: {},
                summary: config.summary,
                filters: {types: [], tags: [], statuses: [], search: '', abnormalFirst: true},
                toasts: {items: [], counter: 0, burst: null},
                connection: {open: false, everOpened: false, attempt: 0, retryTimer: null, handshakeTimer: null},
                lastMessageAt: Date.now(),
                stale: false,
                wsBase: ''
            };
            config.instances.forEach(function (instance) {
                page.instances[instance.key] = instance;
                renderCard(instance);
            });
            renderSummary(config.summary);
            layoutCards();
            updateTitle();
            renderConnection();
            patch('theme-switch', {value: readTheme() === 'dark'});
            page.freshnessTimer = setInterval(checkFreshness, 1000);
            return socketUrl(0);
        },

        // Only a socket the page did not create itself sets `message`; the page's own frames
        // arrive through drainInbox.
        onMessage: function (message) {
            if (page === null || !message || !message.data) {
                return;
            }
            handleFrames([message.data]);
        },

        onSocketState: function (state) {
            // Dash also calls this when the page is inserted, with no state or the component's
            // default one, which has no event time stamp: only real socket events count.
            if (page === null || !state || state.timeStamp === undefined) {
                return;
            }
            var conn = page.connection;
            if (state.readyState === NativeWebSocket.OPEN) {
                clearTimer('retryTimer');
                clearTimer('handshakeTimer');
                conn.open = true;
                conn.everOpened = true;
                conn.attempt = 0;
                page.lastMessageAt = Date.now();
                renderConnection();
            } else if (state.readyState === NativeWebSocket.CLOSED) {
                scheduleReconnect();
            }
        },

        onFilters: function (types, tags, statuses, search, abnormalFirst) {
            if (page === null) {
                return;
            }
            page.filters = {
                types: types || [],
                tags: tags || [],
                statuses: statuses || [],
                search: search || '',
                abnormalFirst: Boolean(abnormalFirst)
            };
            layoutCards();
        },

        onTheme: function (dark) {
            // The switch is rendered without a value and `start` sets it from the stored theme,
            // so the call Dash makes when the page is inserted cannot overwrite that theme.
            if (typeof dark !== 'boolean') {
                return;
            }
            var theme = dark ? 'dark' : 'light';
            applyTheme(theme);
            try {
                window.localStorage.setItem(THEME_KEY, theme);
            } catch (error) {
                console.warn('overview: cannot remember the theme', error);
            }
            if (page !== null) {
                renderCharts(page.summary);
            }
        },

        onLanguageSwitch: function (clicks, config) {
            if (!clicks) {
                // Dash calls this when the page is inserted, before any click.
                return [window.dash_clientside.no_update, window.dash_clientside.no_update];
            }
            var next = config.lang === 'zh' ? 'en' : 'zh';
            return [next, '?lang=' + next];
        },

        // The reconnect schedule in seconds, for the attempt numbered from 1.
        reconnectDelay: reconnectDelay
    };
}());
