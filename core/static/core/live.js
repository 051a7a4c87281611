/*
 * Live regions of the operators' console: server-rendered fragments, refreshed in place.
 *
 * The contract (ARCHITECTURE.md, "Live pages"):
 *   <div data-live="/admin/...?_live=1" data-live-interval="3000">...</div>
 * Every interval (default 3 s) the region's URL is fetched with the header `X-Live-Refresh: 1`
 * and the answer replaces the region's inner HTML. A fragment whose root element carries
 * `data-live-done` is the last one: the region stops refreshing.
 *
 * What an operator is doing is never lost:
 *   - a region is not replaced while focus is in one of its text fields, selects or text
 *     areas, or while one of its forms holds a changed value (a half-typed note);
 *   - checkboxes and radio buttons the user changed keep their state (matched by name+value),
 *     and open <details> stay open (matched by id, data-live-key or position);
 *   - the Django admin changelist's selection counter and "select all" keep working.
 * Nothing is fetched while the tab is hidden or while the header's Pause toggle is on (it is
 * remembered in localStorage, for every page of the console).
 *
 * No dependency: plain DOM and fetch. Loaded (deferred) on every admin page by
 * templates/admin/base_site.html; a page without a region gets no toggle and does nothing.
 */
'use strict';
{
    const STORAGE_KEY = 'jobsconsole.live.paused';
    const DEFAULT_INTERVAL = 3000;
    const MIN_INTERVAL = 500;
    // After failed refreshes, wait up to this many intervals before the next try.
    const MAX_BACKOFF = 10;
    const TEXT_FIELDS = 'textarea, select, input:not([type]), input[type=text], ' +
        'input[type=search], input[type=number], input[type=email], input[type=url], ' +
        'input[type=password], input[type=datetime-local], input[type=date], input[type=time], ' +
        '[contenteditable]:not([contenteditable=false])';

    const regions = new Map();  // element -> its state
    let paused = readPaused();
    let toggle = null;

    function readPaused() {
        try {
            return window.localStorage.getItem(STORAGE_KEY) === '1';
        } catch (e) {  // storage refused (privacy mode): not remembered, still works
            return false;
        }
    }

    function writePaused(value) {
        try {
            window.localStorage.setItem(STORAGE_KEY, value ? '1' : '0');
        } catch (e) { /* not remembered */ }
    }

    function intervalOf(region) {
        const asked = parseInt(region.dataset.liveInterval, 10);
        return Number.isFinite(asked) ? Math.max(asked, MIN_INTERVAL) : DEFAULT_INTERVAL;
    }

    // --- what the user is doing ----------------------------------------------------------------

    function isDirty(field) {
        if (field.matches('input[type=checkbox], input[type=radio]')) {
            return false;  // kept across a refresh instead
        }
        if (field.tagName === 'SELECT') {
            return Array.from(field.options).some((o) => o.selected !== o.defaultSelected);
        }
        if ('defaultValue' in field) {
            return field.value !== field.defaultValue;
        }
        return false;
    }

    // Why a region must not be replaced now, or '' when it may be.
    function holdReason(region) {
        const active = document.activeElement;
        if (active && active !== document.body && region.contains(active) &&
                active.matches(TEXT_FIELDS)) {
            return 'typing';
        }
        for (const field of region.querySelectorAll('input, textarea, select')) {
            if (isDirty(field)) {
                return 'editing';
            }
        }
        if (region.querySelector('[data-live-hold]')) {
            return 'held';
        }
        // Pages may add their own reasons (the changelist's "select all N" does).
        const event = new CustomEvent('live:before-swap', {bubbles: true, cancelable: true});
        if (!region.dispatchEvent(event)) {
            return 'held';
        }
        return '';
    }

    // --- replacing a region --------------------------------------------------------------------

    function keyOf(element, index) {
        return element.id || element.dataset.liveKey || `#${index}`;
    }

    function swap(region, html) {
        const choices = new Map();
        region.querySelectorAll('input[type=checkbox], input[type=radio]').forEach((box) => {
            if (box.name && box.checked !== box.defaultChecked) {
                choices.set(`${box.name}\u0000${box.value}`, box.checked);
            }
        });
        const openDetails = new Map();
        region.querySelectorAll('details').forEach((details, i) => {
            openDetails.set(keyOf(details, i), details.open);
        });
        const active = document.activeElement;
        const focusId = active && region.contains(active) ? active.id : '';

        region.innerHTML = html;

        region.querySelectorAll('input[type=checkbox], input[type=radio]').forEach((box) => {
            const key = `${box.name}\u0000${box.value}`;
            if (choices.has(key)) {
                box.checked = choices.get(key);
            }
        });
        region.querySelectorAll('details').forEach((details, i) => {
            const key = keyOf(details, i);
            if (openDetails.has(key)) {
                details.open = openDetails.get(key);
            }
        });
        if (focusId) {
            const again = document.getElementById(focusId);
            if (again && region.contains(again)) {
                again.focus({preventScroll: true});
            }
        }
        region.dispatchEvent(new CustomEvent('live:swapped', {bubbles: true}));
    }

    // --- refreshing ----------------------------------------------------------------------------

    function schedule(region, state, delay) {
        window.clearTimeout(state.timer);
        state.timer = window.setTimeout(() => tick(region, state), delay);
    }

    function note(region, name) {
        // Counters tests and curious operators can read: data-live-refreshes, -skips, -errors.
        const attr = `live${name}`;
        region.dataset[attr] = String((parseInt(region.dataset[attr], 10) || 0) + 1);
    }

    async function tick(region, state) {
        if (state.done || !region.isConnected) {
            return;
        }
        const interval = intervalOf(region);
        if (paused || document.hidden || state.inflight) {
            note(region, 'Skips');
            schedule(region, state, interval);
            return;
        }
        const reason = holdReason(region);
        region.dataset.liveHold = reason;
        if (reason) {
            note(region, 'Skips');
            schedule(region, state, interval);
            return;
        }
        state.inflight = new AbortController();
        try {
            const url = new URL(region.dataset.live, window.location.href);
            const response = await fetch(url, {
                headers: {'X-Live-Refresh': '1', 'Accept': 'text/html'},
                credentials: 'same-origin',
                cache: 'no-store',
                redirect: 'follow',
                signal: state.inflight.signal,
            });
            if (response.redirected && new URL(response.url).pathname !== url.pathname) {
                // Sent to the login page: the session ended. Stop, and say so.
                state.done = true;
                setStatus('ended', 'The session ended: reload the page to log in again.');
                return;
            }
            if (!response.ok) {
                throw new Error(`HTTP ${response.status}`);
            }
            const html = await response.text();
            // The user may have started typing while the answer was on its way.
            const late = holdReason(region);
            region.dataset.liveHold = late;
            if (late) {
                note(region, 'Skips');
            } else if (html !== state.last) {
                state.last = html;
                swap(region, html);
            }
            note(region, 'Refreshes');
            state.failures = 0;
            region.removeAttribute('data-live-error');
            if (region.querySelector(':scope > [data-live-done]')) {
                state.done = true;
                region.dataset.liveDone = '';
            }
            setStatus();
        } catch (error) {
            if (error.name === 'AbortError') {
                return;
            }
            state.failures += 1;
            note(region, 'Errors');
            region.dataset.liveError = String(error.message || error);
            setStatus('error', 'The last update failed; retrying.');
        } finally {
            state.inflight = null;
        }
        if (!state.done) {
            const backoff = Math.min(2 ** state.failures, MAX_BACKOFF);
            schedule(region, state, interval * (state.failures ? backoff : 1));
        }
    }

    function refreshAllNow() {
        regions.forEach((state, region) => {
            if (!state.done && !state.inflight) {
                schedule(region, state, 0);
            }
        });
    }

    function start(region) {
        if (regions.has(region) || !region.dataset.live) {
            return;
        }
        if (new URL(region.dataset.live, window.location.href).origin !== window.location.origin) {
            return;  // a fragment comes from this console only (it is fetched with the session)
        }
        const state = {timer: 0, inflight: null, failures: 0, done: false, last: null};
        regions.set(region, state);
        if (region.querySelector(':scope > [data-live-done]')) {
            state.done = true;  // rendered finished: nothing will change
            return;
        }
        schedule(region, state, intervalOf(region));
    }

    // --- the header's Pause / Resume toggle ----------------------------------------------------

    function setStatus(kind, message) {
        if (!toggle) {
            return;
        }
        const label = toggle.querySelector('.live-label');
        toggle.setAttribute('aria-pressed', paused ? 'true' : 'false');
        toggle.dataset.state = kind || (paused ? 'paused' : 'live');
        if (kind === 'ended' || kind === 'error') {
            label.textContent = kind === 'ended' ? 'Live: session ended' : 'Live: retrying';
            toggle.title = message;
            return;
        }
        label.textContent = paused ? 'Paused: resume live updates' : 'Live: pause updates';
        toggle.title = paused
            ? 'Updates are paused on every console page. Click to resume.'
            : 'This page updates itself every few seconds. Click to pause.';
    }

    function buildToggle() {
        toggle = document.createElement('button');
        toggle.type = 'button';
        toggle.id = 'live-toggle';
        toggle.className = 'live-toggle';
        toggle.innerHTML = '<span class="live-dot" aria-hidden="true"></span>' +
            '<span class="live-label"></span>';
        toggle.addEventListener('click', () => {
            paused = !paused;
            writePaused(paused);
            setStatus();
            if (!paused) {
                refreshAllNow();
            }
        });
        const tools = document.getElementById('user-tools');
        if (tools) {
            const theme = tools.querySelector('.theme-toggle');
            tools.insertBefore(toggle, theme || null);
        } else {
            toggle.classList.add('live-toggle-floating');
            document.body.appendChild(toggle);
        }
        setStatus();
    }

    // The toggle is per browser: another tab pausing pauses this one too.
    window.addEventListener('storage', (event) => {
        if (event.key === STORAGE_KEY) {
            paused = event.newValue === '1';
            setStatus();
            if (!paused) {
                refreshAllNow();
            }
        }
    });

    document.addEventListener('visibilitychange', () => {
        if (!document.hidden && !paused) {
            refreshAllNow();  // back on the tab: show the present at once
        }
    });

    // --- Django admin changelists ---------------------------------------------------------------
    // Django's actions.js keeps the row checkboxes it found at load in a fixed list. A refreshed
    // result list has new checkboxes, so the list it is given is one that looks them up anew on
    // every use; after a refresh its counter and "select all" are brought up to date by the same
    // change event a click sends.

    const ROW_BOXES = '#result_list tbody input.action-select';
    let actionsStarted = false;

    function currentBoxes() {
        return document.querySelectorAll(ROW_BOXES);
    }

    const liveBoxes = {
        get length() { return currentBoxes().length; },
        item(i) { return currentBoxes()[i]; },
        forEach(fn, self) { currentBoxes().forEach(fn, self); },
        [Symbol.iterator]() { return currentBoxes()[Symbol.iterator](); },
    };

    function wrapActions() {
        const original = window.Actions;
        if (typeof original !== 'function' || original.liveWrapped) {
            return;
        }
        const wrapped = function(_checkboxes, options) {
            if (actionsStarted) {
                return undefined;
            }
            actionsStarted = true;
            return original(liveBoxes, options);
        };
        wrapped.liveWrapped = true;
        window.Actions = wrapped;
    }

    document.addEventListener('live:before-swap', (event) => {
        // "Select all N jobs" chose the whole filter: the rows on screen no longer matter, and a
        // refresh would reset that choice.
        const across = document.querySelector('#changelist-form input.select-across');
        if (event.target.closest('#result_list') && across && across.value === '1') {
            event.preventDefault();
        }
    });

    document.addEventListener('live:swapped', (event) => {
        if (!event.target.closest('#result_list')) {
            return;
        }
        const boxes = currentBoxes();
        boxes.forEach((box) => box.closest('tr').classList.toggle('selected', box.checked));
        if (!actionsStarted && boxes.length && typeof window.Actions === 'function' &&
                document.getElementById('action-toggle')) {
            window.Actions(liveBoxes);  // the page loaded empty: start Django's actions now
        }
        if (actionsStarted && boxes.length) {
            const probe = Array.from(boxes).find((box) => box.checked) || boxes[0];
            probe.dispatchEvent(new Event('change', {bubbles: true}));
        }
    });

    // --- start ---------------------------------------------------------------------------------

    function init() {
        wrapActions();
        document.querySelectorAll('[data-live]').forEach(start);
        if (regions.size) {
            buildToggle();
        }
    }

    // Deferred: runs after the page's own scripts (Django's actions.js among them) and before
    // their DOMContentLoaded handlers.
    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', init);
    } else {
        init();
    }
}
