// tocsin console: a single page over the collector's JSON API. No framework, no build step:
// elements are made with el() and text is always set as text (never parsed as HTML).
'use strict';

const L = {
  'zh-CN': {
    overview: '概览', alerts: '告警', incidents: '事件', silences: '静默与维护', hosts: '主机', probes: '探测',
    rules: '规则', notifications: '通知', audit: '审计', tokens: '令牌', signin: '登录', signout: '退出',
    user: '用户名', credential: '凭据（管理或只读令牌）', wrong: '凭据错误', firing: '正在告警', pending: '待定',
    emergency: '紧急', critical: '严重', warning: '警告', hostsUp: '主机在线', hostsDown: '主机离线',
    openIncidents: '未关闭事件', deadLetters: '投递失败', collector: '采集器', version: '版本', uptime: '运行时长',
    series: '序列', samples: '已接收样本', level: '级别', host: '主机', service: '服务', rule: '规则', category: '类别',
    state: '状态', all: '全部', silenced: '已静默', inhibited: '已抑制', posted: '外部', postedHint: '由外部系统（如 Prometheus）经 /api/v2/alerts 发来', acked: '已确认', active: '未处理',
    since: '开始', value: '当前值', summary: '摘要', labels: '标签', annotations: '注解', thresholds: '阈值',
    history: '近期走势', ack: '确认', comment: '备注', silenceLike: '静默同类告警', noAlerts: '没有告警',
    levelHistory: '级别变化', opened: '开始', resolved: '已恢复', ackedBy: '确认人', resolve: '关闭事件',
    addNote: '添加备注', note: '备注', report: '下载报告', timeline: '时间线', affected: '受影响',
    owner: '负责人', rootCause: '根因', impact: '影响', feedback: '告警评价', verdict: '评价', sendFeedback: '提交评价',
    'v.useful': '有用', 'v.noise': '噪声', 'v.wrong_level': '级别不当', 'v.duplicate': '重复', changes: '此前的变更',
    remediation: '自动处置', mtta: '平均确认时间', mttr: '平均恢复时间', availability: '可用性',
    noisy: '最频繁的规则', window: '时间范围', days: '天', matchers: '匹配条件', name: '名称', op: '运算',
    duration: '时长', create: '创建', expire: '使其失效', preview: '将被静默的告警', recurring: '周期性维护窗口',
    weekdays: '星期（逗号分隔，如 mon,tue；空为每天）', start: '开始', end: '结束', createdBy: '创建人',
    lastSeen: '最近上报', interval: '上报间隔', up: '在线', down: '离线', cpu: 'CPU', memory: '内存',
    receiver: '接收方', attempts: '尝试次数', lastError: '最近错误', retry: '重试', actor: '操作人', event: '操作',
    detail: '详情', issue: '签发', revoke: '吊销', retire: '下线', retireHint: '已下线的主机：不再判断其失联，它的告警以“host removed”恢复', created: '创建时间', revoked: '吊销时间', newToken: '新令牌（只显示一次）',
    readOnly: '只读', saved: '已保存', none: '无', expr: '表达式', source: '来源', dynamic: '动态阈值', recording: '记录规则', everyInterval: '每', for: '持续',
    band: '学习到的正常范围', open: '未关闭', acknowledged: '已确认', status: '状态', kind: '类型', addMatcher: '添加条件',
    theme: '主题', ok: '正常', services: '服务可用性', probe: '探测项', success: '成功', failing: '失败',
    incidentStats: '事件统计', count: '数量', noData: '暂无数据', loading: '加载中…', error: '出错',
    storageErrors: '存储错误', notificationsPending: '待发送通知', rulesLoaded: '规则数',
    configuration: '配置', configInForce: '自 {0} 起生效', configRefused: '上次重新加载被拒绝，仍在使用 {0} 的配置',
    mvalue: '值', recover: '恢复', outage: '故障类型', 's.active': '生效中', 's.pending': '未开始', 's.expired': '已失效',
    slo: '服务等级', indicator: '指标', objective: '目标', budgetLeft: '剩余错误预算', burn: '消耗速率', conditions: '告警条件',
    'c.fast': '快速消耗', 'c.slow': '慢速消耗', 'c.ticket': '持续消耗', 'sli.availability': '可用性', 'sli.latency': '延迟',
    recentChanges: '近 7 天的变更', by: '执行人', link: '链接', noObjectives: '没有配置服务等级目标的服务',
    reports: '报告', 'r.daily': '每日巡检', 'r.weekly': '周报', 'r.monthly': '月报', download: '下载',
  },
  en: {
    overview: 'Overview', alerts: 'Alerts', incidents: 'Incidents', silences: 'Silences', hosts: 'Hosts', probes: 'Probes',
    rules: 'Rules', notifications: 'Notifications', audit: 'Audit', tokens: 'Tokens', signin: 'Sign in', signout: 'Sign out',
    user: 'User', credential: 'Credential (admin or read-only token)', wrong: 'Wrong credential', firing: 'Firing', pending: 'Pending',
    emergency: 'Emergency', critical: 'Critical', warning: 'Warning', hostsUp: 'Hosts up', hostsDown: 'Hosts down',
    openIncidents: 'Open incidents', deadLetters: 'Dead letters', collector: 'Collector', version: 'Version', uptime: 'Uptime',
    series: 'Series', samples: 'Samples accepted', level: 'Level', host: 'Host', service: 'Service', rule: 'Rule', category: 'Category',
    state: 'State', all: 'All', silenced: 'Silenced', inhibited: 'Inhibited', posted: 'Posted', postedHint: 'Raised elsewhere (e.g. Prometheus) and posted to /api/v2/alerts', acked: 'Acknowledged', active: 'Unhandled',
    since: 'Since', value: 'Value', summary: 'Summary', labels: 'Labels', annotations: 'Annotations', thresholds: 'Thresholds',
    history: 'Recent history', ack: 'Acknowledge', comment: 'Comment', silenceLike: 'Silence like this', noAlerts: 'No alerts',
    levelHistory: 'Level changes', opened: 'Opened', resolved: 'Resolved', ackedBy: 'Acknowledged by', resolve: 'Resolve',
    addNote: 'Add note', note: 'Note', report: 'Download report', timeline: 'Timeline', affected: 'Affected',
    owner: 'Owner', rootCause: 'Root cause', impact: 'Impact', feedback: 'Alert feedback', verdict: 'Verdict', sendFeedback: 'Send feedback',
    'v.useful': 'Useful', 'v.noise': 'Noise', 'v.wrong_level': 'Wrong level', 'v.duplicate': 'Duplicate', changes: 'Changes before it',
    remediation: 'Remediation', mtta: 'MTTA', mttr: 'MTTR', availability: 'Availability',
    noisy: 'Noisiest rules', window: 'Window', days: 'days', matchers: 'Matchers', name: 'Name', op: 'Op',
    duration: 'Duration', create: 'Create', expire: 'Expire', preview: 'Alerts it would silence', recurring: 'Recurring maintenance window',
    weekdays: 'Days (comma-separated, e.g. mon,tue; empty: every day)', start: 'Start', end: 'End', createdBy: 'Created by',
    lastSeen: 'Last seen', interval: 'Interval', up: 'up', down: 'down', cpu: 'CPU', memory: 'Memory',
    receiver: 'Receiver', attempts: 'Attempts', lastError: 'Last error', retry: 'Retry', actor: 'Who', event: 'What',
    detail: 'Detail', issue: 'Issue', revoke: 'Revoke', retire: 'Retire', retireHint: 'A decommissioned host: no longer judged down, its alerts resolved (host removed)', created: 'Created', revoked: 'Revoked', newToken: 'New token (shown once)',
    readOnly: 'read-only', saved: 'Saved', none: 'none', expr: 'Expression', source: 'Source', dynamic: 'Dynamic', recording: 'recording', everyInterval: 'every', for: 'For',
    band: 'Learned normal band', open: 'Open', acknowledged: 'Acknowledged', status: 'Status', kind: 'Kind', addMatcher: 'Add matcher',
    theme: 'Theme', ok: 'OK', services: 'Service availability', probe: 'Probe', success: 'up', failing: 'failing',
    incidentStats: 'Incident statistics', count: 'Count', noData: 'No data', loading: 'Loading…', error: 'Error',
    storageErrors: 'Storage errors', notificationsPending: 'Notifications pending', rulesLoaded: 'Rules',
    configuration: 'Configuration', configInForce: 'in force since {0}', configRefused: 'last reload refused; the one of {0} still runs',
    mvalue: 'Value', recover: 'recover', outage: 'Outage kind', 's.active': 'active', 's.pending': 'pending', 's.expired': 'expired',
    slo: 'Service levels', indicator: 'Indicator', objective: 'Objective', budgetLeft: 'Error budget left', burn: 'Burn rate', conditions: 'Conditions',
    'c.fast': 'fast burn', 'c.slow': 'slow burn', 'c.ticket': 'steady burn', 'sli.availability': 'availability', 'sli.latency': 'latency',
    recentChanges: 'Changes, last 7 days', by: 'By', link: 'Link', noObjectives: 'No service has an objective configured',
    reports: 'Reports', 'r.daily': 'Daily inspection', 'r.weekly': 'Weekly', 'r.monthly': 'Monthly', download: 'Download',
  },
};
const LEVELS = ['emergency', 'critical', 'warning'];
let lang = localStorage.getItem('tocsin.lang') || 'zh-CN';
if (!L[lang]) lang = 'zh-CN';
const t = (k) => L[lang][k] ?? L.en[k] ?? k;
let me = null;
let page = null; // {refresh: fn} of the page shown
let gen = 0;     // bumps on every navigation: late answers of an earlier page are dropped

// --- helpers -------------------------------------------------------------------------
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'value') e.value = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
/** Replaces a node's children, skipping null, undefined and false. */
function put(node, ...kids) {
  node.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false)
    .map((k) => (k instanceof Node ? k : document.createTextNode(String(k)))));
}
const svgNs = 'http://www.w3.org/2000/svg';
function sv(tag, attrs, ...kids) {
  const e = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

class ApiError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}
/** A call of the JSON API: its `data`, or with `asText` the answer's text (a report). */
async function api(method, path, body, asText = false) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && me && me.csrf) headers['X-CSRF-Token'] = me.csrf;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let j = null;
  try { j = JSON.parse(text); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    if (r.status === 401 && path !== '/api/v1/session') { me = null; go('#/login'); }
    throw new ApiError(r.status, (j && (j.error || j.message)) || r.statusText);
  }
  if (asText) return text;
  return j ? j.data : null;
}
const isAdmin = () => me && me.role === 'admin';
const pad = (n) => String(n).padStart(2, '0');
function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function dur(s) {
  if (s === null || s === undefined || isNaN(s)) return '—';
  s = Math.round(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
  const u = lang === 'en' ? ['d', 'h', 'm', 's'] : ['天', '小时', '分', '秒'];
  const parts = [[d, u[0]], [h, u[1]], [m, u[2]], [x, u[3]]].filter(([n]) => n > 0).slice(0, 2);
  return parts.length ? parts.map(([n, w]) => `${n}${lang === 'en' ? '' : ' '}${w}`).join(' ') : `0${u[3]}`;
}
function num(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'number') return String(v);
  if (Math.abs(v) >= 1e6 || (Math.abs(v) < 1e-3 && v !== 0)) return v.toExponential(3);
  return String(Math.round(v * 1000) / 1000);
}
const badge = (level) => el('span', { class: `badge ${level || ''}`, 'data-level': level || '' }, level ? t(level) : t('pending'));
const chips = (labels, skip = []) => Object.entries(labels || {}).filter(([k]) => !skip.includes(k)).map(([k, v]) => el('span', { class: 'chip' }, `${k}=${v}`));
const errBox = (e) => el('p', { class: 'err', role: 'alert' }, `${t('error')}: ${e.message || e}`);
function table(heads, rows, opts = {}) {
  return el('table', { 'data-test': opts.test },
    el('thead', {}, el('tr', {}, heads.map((h) => el('th', { class: h.cls }, h.label ?? h)))),
    el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: heads.length, class: 'muted' }, opts.empty || t('noData')))));
}
/** Marks page `name` rendered: tests and the load benchmark wait on it. */
function ready(name) {
  document.body.dataset.ready = name;
  if (!performance.getEntriesByName('tocsin-ready').length) performance.mark('tocsin-ready');
}
function go(hash) { if (location.hash !== hash) location.hash = hash; else route(); }
function query(hash) { return new URLSearchParams((hash.split('?')[1]) || ''); }

// --- chrome ----------------------------------------------------------------------------
const NAV = ['overview', 'alerts', 'incidents', 'slo', 'reports', 'silences', 'hosts', 'probes', 'rules', 'notifications', 'audit', 'tokens'];
function header(current) {
  const top = document.getElementById('top');
  put(top, 
    el('a', { class: 'brand', href: '#/' }, el('img', { src: '/console/icon.svg', alt: '' }), 'tocsin'),
    me ? el('nav', {}, NAV.filter((n) => n !== 'tokens' || isAdmin()).map((n) =>
      el('a', { href: n === 'overview' ? '#/' : `#/${n}`, class: n === current ? 'on' : '', 'data-nav': n }, t(n)))) : el('nav'),
    el('div', { class: 'me' },
      el('button', { class: 'plain', 'data-test': 'lang', onclick: () => { lang = lang === 'en' ? 'zh-CN' : 'en'; localStorage.setItem('tocsin.lang', lang); document.documentElement.lang = lang; route(); } }, lang === 'en' ? '中文' : 'English'),
      el('button', { class: 'plain', title: t('theme'), 'data-test': 'theme', onclick: toggleTheme }, '◐'),
      me && !me.open ? el('span', { 'data-test': 'whoami' }, `${me.user}${isAdmin() ? '' : ` (${t('readOnly')})`}`) : null,
      me && !me.open ? el('button', { class: 'plain', 'data-test': 'signout', onclick: signOut }, t('signout')) : null,
      me && me.open ? el('a', { href: '#/login', 'data-test': 'signin' }, t('signin')) : null));
}
function toggleTheme() {
  const cur = document.documentElement.dataset.theme
    || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
  const next = cur === 'dark' ? 'light' : 'dark';
  document.documentElement.dataset.theme = next;
  localStorage.setItem('tocsin.theme', next);
}
async function signOut() {
  try { await api('DELETE', '/api/v1/session'); } catch (_) { /* gone anyway */ }
  me = null;
  go('#/login');
}

// --- pages -----------------------------------------------------------------------------
function loginPage(main) {
  const msg = el('div');
  const user = el('input', { name: 'user', autocomplete: 'username', required: true, 'data-test': 'user' });
  const cred = el('input', { name: 'credential', type: 'password', autocomplete: 'current-password', required: true, 'data-test': 'credential' });
  put(main, el('form', {
    class: 'panel stack login', 'data-test': 'login',
    onsubmit: async (ev) => {
      ev.preventDefault();
      put(msg);
      try {
        me = await api('POST', '/api/v1/session', { user: user.value, credential: cred.value });
        go('#/');
      } catch (e) {
        put(msg, el('p', { class: 'err', role: 'alert', 'data-test': 'login-error' }, e.status === 401 ? t('wrong') : e.message));
      }
    },
  }, el('h1', {}, `tocsin · ${t('signin')}`), el('label', {}, t('user'), user), el('label', {}, t('credential'), cred), msg,
  el('button', { type: 'submit' }, t('signin'))));
}

async function overview(main) {
  const [alerts, status, stats] = await Promise.all([
    api('GET', '/api/v1/alerts'), api('GET', '/api/v1/status/collector'), api('GET', '/api/v1/incidents/stats'),
  ]);
  const firing = alerts.alerts.filter((a) => a.state === 'firing');
  const by = (l) => firing.filter((a) => a.level === l).length;
  const card = (n, label, cls, href, test) => el('a', { class: 'card', href, 'data-test': test }, el('div', { class: `n ${cls || ''}` }, n), el('div', { class: 'l' }, label));
  const avail = Object.entries(stats.availability_service || {});
  put(main, 
    el('h1', {}, t('overview')),
    el('div', { class: 'cards' },
      LEVELS.map((l) => card(by(l), `${t('firing')} · ${t(l)}`, '', `#/alerts?level=${l}`, `firing-${l}`)),
      card(status.hostsUp, t('hostsUp'), '', '#/hosts', 'hosts-up'),
      card(status.hostsDown, t('hostsDown'), '', '#/hosts', 'hosts-down'),
      card(status.incidentsOpen, t('openIncidents'), '', '#/incidents', 'open-incidents'),
      card(status.deadLetters, t('deadLetters'), '', '#/notifications?status=dead', 'dead-letters')),
    el('div', { class: 'grid2' },
      el('section', {}, el('h2', {}, t('firing')), el('div', { class: 'panel' }, alertTable(firing.slice(0, 15)))),
      el('section', {},
        el('h2', {}, t('services')),
        el('div', { class: 'panel' }, table([t('service'), t('availability')], avail.map(([s, v]) => el('tr', {}, el('td', {}, s), el('td', {}, `${(v * 100).toFixed(3)} %`))))),
        el('h2', {}, t('collector')),
        el('div', { class: 'panel', 'data-test': 'collector' }, el('dl', { class: 'kv' },
          [[t('version'), status.version], [t('uptime'), dur(status.uptimeSeconds)], [t('series'), status.series],
            [t('samples'), status.samplesAccepted], [t('rulesLoaded'), status.rules], [t('notificationsPending'), status.notificationsPending],
            [t('storageErrors'), status.storageErrors],
            [t('configuration'), t(status.reloadConfigSuccess ? 'configInForce' : 'configRefused').replace('{0}', when(status.lastConfigTime))]]
            .map(([k, v]) => [el('dt', {}, k), el('dd', {}, String(v))]))))));
  ready('overview');
}

function alertFlags(a) {
  return [
    a.silencedBy && a.silencedBy.length ? el('span', { class: 'flag', 'data-flag': 'silenced' }, t('silenced')) : null,
    a.inhibited ? el('span', { class: 'flag', 'data-flag': 'inhibited' }, t('inhibited')) : null,
    a.source === 'posted' ? el('span', { class: 'flag', 'data-flag': 'posted', title: t('postedHint') }, t('posted')) : null,
    a.ack ? el('span', { class: 'flag', 'data-flag': 'acked' }, `${t('acked')} · ${a.ack.by}`) : null,
  ];
}
function alertTable(list) {
  return table([t('level'), t('rule'), t('host'), { label: t('summary'), cls: 'hide-s' }, t('since'), { label: t('value'), cls: 'right' }, ''],
    list.map((a) => el('tr', { class: 'click', 'data-alert': a.id, 'data-rule': a.rule, onclick: () => go(`#/alert/${a.id}`) },
      el('td', {}, badge(a.level)), el('td', {}, a.rule), el('td', {}, a.labels.host || '—'),
      el('td', { class: 'hide-s' }, (a.annotations && a.annotations.summary) || ''),
      el('td', {}, when(a.since)), el('td', { class: 'right' }, num(a.value)), el('td', {}, alertFlags(a)))),
  { test: 'alerts', empty: t('noAlerts') });
}

const alertFilter = { level: '', host: '', service: '', rule: '', category: '', status: '' };
async function alertsPage(main, hash) {
  const q = query(hash);
  for (const k of Object.keys(alertFilter)) if (q.has(k)) alertFilter[k] = q.get(k);
  const list = el('div', { class: 'panel' });
  const input = (k) => el('input', { value: alertFilter[k], 'data-filter': k, oninput: (e) => { alertFilter[k] = e.target.value; refresh(); } });
  const select = (k, opts) => el('select', { 'data-filter': k, onchange: (e) => { alertFilter[k] = e.target.value; refresh(); } },
    opts.map(([v, label]) => el('option', { value: v, selected: alertFilter[k] === v }, label)));
  put(main, el('h1', {}, t('alerts')),
    el('div', { class: 'filters' },
      el('label', {}, t('level'), select('level', [['', t('all')], ...LEVELS.map((l) => [l, t(l)]), ['pending', t('pending')]])),
      el('label', {}, t('host'), input('host')), el('label', {}, t('service'), input('service')),
      el('label', {}, t('rule'), input('rule')), el('label', {}, t('category'), input('category')),
      el('label', {}, t('state'), select('status', [['', t('all')], ['active', t('active')], ['silenced', t('silenced')], ['inhibited', t('inhibited')], ['acked', t('acked')]]))),
    list);
  let all = [];
  const match = (a) => {
    const f = alertFilter;
    const has = (v, s) => !s || String(v || '').toLowerCase().includes(s.toLowerCase());
    if (f.level === 'pending' ? a.state !== 'pending' : f.level && a.level !== f.level) return false;
    if (!has(a.labels.host, f.host) || !has(a.labels.service, f.service) || !has(a.rule, f.rule) || !has(a.labels.category, f.category)) return false;
    const silenced = a.silencedBy && a.silencedBy.length > 0;
    switch (f.status) {
      case 'silenced': return silenced;
      case 'inhibited': return a.inhibited;
      case 'acked': return !!a.ack;
      case 'active': return !silenced && !a.inhibited && !a.ack;
      default: return true;
    }
  };
  const refresh = () => put(list, alertTable(all.filter(match)));
  page.refresh = async () => { all = (await api('GET', '/api/v1/alerts')).alerts; refresh(); };
  await page.refresh();
  ready('alerts');
}

async function queryRange(expr, seconds) {
  const end = Date.now() / 1000, start = end - seconds;
  const step = Math.max(seconds >= 3600 ? 15 : 1, Math.round(seconds / 240));
  return promql('query_range', { query: expr, start, end, step });
}
/** A PromQL query's result: `query` (`[{metric, value: [t, "v"]}]`) or `query_range`. */
async function promql(kind, params) {
  const r = await fetch(`/api/v1/${kind}?${new URLSearchParams(params)}`, { credentials: 'same-origin' });
  const j = await r.json();
  if (j.status !== 'success') throw new Error(j.error || 'query failed');
  return j.data.result;
}
const instant = (expr) => promql('query', { query: expr });
const subset = (small, big) => Object.entries(small).every(([k, v]) => k === '__name__' || big[k] === v);
function selector(name, labels) {
  const esc = (v) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
  return `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`;
}
function chart(series, lines, band) {
  const W = 720, H = 220, P = 36;
  const pts = series.flatMap((s) => s.values.map(([x, y]) => [x, +y]));
  const bpts = band ? [...band.lower, ...band.upper].map(([x, y]) => [x, +y]) : [];
  const all = [...pts, ...bpts].filter(([, y]) => isFinite(y));
  if (!all.length) return el('p', { class: 'muted' }, t('noData'));
  const ys = [...all.map(([, y]) => y), ...lines.map((l) => l.y)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const xs = all.map(([x]) => x);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) || 1];
  const X = (x) => P + (x - x0) / Math.max(1, x1 - x0) * (W - P - 6);
  const Y = (y) => H - 18 - (y - y0) / (y1 - y0) * (H - 28);
  const g = sv('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', 'data-test': 'chart', role: 'img' });
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    g.append(sv('line', { class: 'grid', x1: P, x2: W, y1: Y(y), y2: Y(y) }), sv('text', { x: 2, y: Y(y) + 4 }, num(y)));
  }
  if (band && band.lower.length && band.upper.length) {
    const path = [...band.upper.map(([x, y]) => `${X(x)},${Y(+y)}`), ...band.lower.slice().reverse().map(([x, y]) => `${X(x)},${Y(+y)}`)];
    g.append(sv('polygon', { class: 'band', points: path.join(' '), 'data-test': 'band' }));
  }
  for (const l of lines) {
    g.append(sv('line', { class: 'th', x1: P, x2: W, y1: Y(l.y), y2: Y(l.y), stroke: `var(--${l.level})`, 'data-threshold': l.level }));
  }
  for (const s of series) {
    g.append(sv('polyline', { class: 'v', points: s.values.map(([x, y]) => `${X(x)},${Y(+y)}`).join(' ') }));
    if (s.values.length < 40) for (const [x, y] of s.values) g.append(sv('circle', { cx: X(x), cy: Y(+y), r: 3, class: 'dot' }));
  }
  const d = (x) => { const z = new Date(x * 1000); return `${pad(z.getHours())}:${pad(z.getMinutes())}`; };
  g.append(sv('text', { x: P, y: H - 3 }, d(x0)), sv('text', { x: W - 40, y: H - 3 }, d(x1)));
  return g;
}

async function alertPage(main, id) {
  const list = (await api('GET', '/api/v1/alerts')).alerts;
  const a = list.find((x) => x.id === id);
  if (!a) { put(main, el('h1', {}, t('alerts')), el('p', { class: 'muted', 'data-test': 'gone' }, t('noAlerts'))); return; }
  const chartBox = el('div', { class: 'panel' }, t('loading'));
  const historyBox = el('div', { class: 'panel', 'data-test': 'level-history' }, t('loading'));
  const msg = el('div');
  const thresholds = Object.entries(a.thresholds || {});
  const ackBox = isAdmin() && a.state === 'firing' && !a.ack ? el('form', {
    class: 'row', 'data-test': 'ack-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api('POST', `/api/v1/alerts/${a.id}/ack`, { by: me.user || 'console', comment: ev.target.comment.value });
        route();
      } catch (e) { put(msg, errBox(e)); }
    },
  }, el('label', {}, t('comment'), el('input', { name: 'comment' })), el('button', { type: 'submit', 'data-test': 'ack' }, t('ack'))) : null;
  put(main, 
    el('h1', {}, badge(a.level), ' ', a.rule),
    el('div', { class: 'row' }, alertFlags(a)),
    msg,
    el('div', { class: 'grid2' },
      el('div', { class: 'panel' }, el('dl', { class: 'kv' },
        el('dt', {}, t('summary')), el('dd', {}, (a.annotations && a.annotations.summary) || '—'),
        el('dt', {}, t('value')), el('dd', { 'data-test': 'value' }, num(a.value), a.score !== null && a.score !== undefined ? ` (score ${num(a.score)})` : ''),
        el('dt', {}, t('since')), el('dd', {}, when(a.since)),
        el('dt', {}, t('levelHistory')), el('dd', {}, `${t(a.level || 'pending')} ${when(a.levelSince)}`),
        el('dt', {}, t('thresholds')), el('dd', {}, thresholds.length ? thresholds.map(([l, s]) => el('div', {}, badge(l), ` ${s.onScore ? 'score ' : ''}${s.op} ${s.threshold}`, s.recover ? ` · ${t('recover')} ${s.recover.op} ${num(s.recover.threshold)}` : '', s.for ? ` · ${t('for')} ${dur(s.for)}` : '')) : '—'),
        el('dt', {}, t('expr')), el('dd', { class: 'mono' }, a.expr || '—'),
        a.ack ? [el('dt', {}, t('ackedBy')), el('dd', { 'data-test': 'acked-by' }, `${a.ack.by} · ${when(a.ack.at)} ${a.ack.comment || ''}`)] : null,
        a.silencedBy && a.silencedBy.length ? [el('dt', {}, t('silenced')), el('dd', {}, a.silencedBy.map((s) => el('a', { href: '#/silences' }, `#${s} `)))] : null)),
      el('div', { class: 'panel' },
        el('h2', {}, t('labels')), el('div', {}, chips(a.labels)),
        el('h2', {}, t('annotations')), el('dl', { class: 'kv' }, Object.entries(a.annotations || {}).map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
        el('div', { class: 'row', style: 'margin-top:.8rem' }, ackBox,
          isAdmin() ? el('a', { href: `#/silences?from=${a.id}`, 'data-test': 'silence-like' }, el('button', { class: 'plain', type: 'button' }, t('silenceLike'))) : null))),
    el('h2', {}, t('history')), chartBox,
    el('h2', {}, t('levelHistory')), historyBox);
  // The series behind the alert, with its thresholds (or its learned band).
  try {
    const own = Object.fromEntries(Object.entries(a.labels).filter(([k]) => k !== 'alertname'));
    // Six hours, or the last quarter of an hour at a finer step for a series younger than that.
    let span = 6 * 3600;
    let series = [];
    if (a.expr) {
      series = (await queryRange(a.expr, span)).filter((s) => subset(s.metric, own));
      if (Math.max(0, ...series.map((s) => s.values.length)) < 12) {
        span = 900;
        series = (await queryRange(a.expr, span)).filter((s) => subset(s.metric, own));
      }
    }
    let band = null;
    if (a.score !== null && a.score !== undefined) {
      const sel = (n) => queryRange(selector(n, { rule: a.rule }), span);
      const [lo, hi, v] = await Promise.all([sel('tocsin_baseline_lower'), sel('tocsin_baseline_upper'), sel('tocsin_baseline_value')]);
      const pick = (r) => (r.find((s) => subset(Object.fromEntries(Object.entries(s.metric).filter(([k]) => k !== 'rule')), own)) || { values: [] }).values;
      band = { lower: pick(lo), upper: pick(hi) };
      if (!series.length) series = [{ values: pick(v) }];
    }
    const lines = band ? [] : thresholds.filter(([, s]) => !s.onScore).map(([l, s]) => ({ level: l, y: s.threshold }));
    put(chartBox, chart(series, lines, band), band ? el('p', { class: 'muted' }, t('band')) : null);
  } catch (e) { put(chartBox, errBox(e)); }
  // Its level history: the entries about it on its incident's timeline.
  try {
    const from = new Date(Date.now() - 30 * 86400e3).toISOString();
    const inc = (await api('GET', `/api/v1/incidents?from=${encodeURIComponent(from)}&limit=1000`)).incidents
      .find((i) => i.alerts && i.alerts[a.id]);
    if (!inc) put(historyBox, el('p', { class: 'muted' }, t('noData')));
    else {
      const full = await api('GET', `/api/v1/incidents/${encodeURIComponent(inc.id)}`);
      const mine = (full.timeline || []).filter((e) => e.text.includes(a.rule) || ['acknowledged', 'note', 'resolved'].includes(e.kind));
      put(historyBox, el('ol', { class: 'timeline' }, mine.map((e) => el('li', { 'data-kind': e.kind },
        el('time', { datetime: e.at }, when(e.at)), el('span', { class: 'chip' }, e.kind), el('span', {}, e.text)))),
      el('a', { href: `#/incident/${encodeURIComponent(inc.id)}` }, `${t('incidents')}: ${inc.title}`));
    }
  } catch (e) { put(historyBox, errBox(e)); }
  ready('alert');
}

const incFilter = { state: '', severity: '', host: '', days: '7' };
async function incidentsPage(main, hash) {
  const q = query(hash);
  for (const k of Object.keys(incFilter)) if (q.has(k)) incFilter[k] = q.get(k);
  const list = el('div', { class: 'panel' });
  const stats = el('div', { class: 'panel', 'data-test': 'stats' });
  const set = (k) => (e) => { incFilter[k] = e.target.value; page.refresh(); };
  const select = (k, opts) => el('select', { 'data-filter': k, onchange: set(k) }, opts.map(([v, l]) => el('option', { value: v, selected: incFilter[k] === v }, l)));
  put(main, el('h1', {}, t('incidents')),
    el('div', { class: 'filters' },
      el('label', {}, t('state'), select('state', [['', t('all')], ['open', t('open')], ['acknowledged', t('acknowledged')], ['resolved', t('resolved')]])),
      el('label', {}, t('level'), select('severity', [['', t('all')], ...LEVELS.map((l) => [l, t(l)])])),
      el('label', {}, t('host'), el('input', { value: incFilter.host, onchange: set('host') })),
      el('label', {}, `${t('window')} (${t('days')})`, select('days', [['1', '1'], ['7', '7'], ['30', '30'], ['90', '90']]))),
    list, el('h2', {}, t('incidentStats')), stats);
  page.refresh = async () => {
    const from = new Date(Date.now() - incFilter.days * 86400e3).toISOString();
    const p = new URLSearchParams({ from });
    for (const k of ['state', 'severity', 'host']) if (incFilter[k]) p.set(k, incFilter[k]);
    const [inc, st] = await Promise.all([api('GET', `/api/v1/incidents?${p}`), api('GET', `/api/v1/incidents/stats?from=${encodeURIComponent(from)}`)]);
    put(list, table([t('level'), t('summary'), t('state'), t('opened'), { label: t('affected'), cls: 'hide-s' }, t('mttr')],
      inc.incidents.map((i) => el('tr', { class: 'click', 'data-incident': i.id, onclick: () => go(`#/incident/${i.id}`) },
        el('td', {}, badge(i.severity)), el('td', {}, i.title), el('td', {}, el('span', { class: `badge ${i.state}` }, t(i.state) || i.state)),
        el('td', {}, when(i.opened_at)), el('td', { class: 'hide-s' }, [...i.hosts, ...i.services].join(', ')),
        el('td', {}, dur(i.time_to_resolve_seconds)))), { test: 'incidents' }));
    put(stats, el('div', { class: 'cards' },
      [[t('count'), st.count], [t('mtta'), dur(st.mtta_seconds)], [t('mttr'), dur(st.mttr_seconds)]].map(([l, v]) => el('div', { class: 'card' }, el('div', { class: 'n' }, String(v)), el('div', { class: 'l' }, l)))),
    el('div', { class: 'grid2' },
      el('div', {}, el('h2', {}, t('availability')), table([t('service'), t('availability')], Object.entries(st.availability_service || {}).map(([s, v]) => el('tr', {}, el('td', {}, s), el('td', {}, `${(v * 100).toFixed(3)} %`))))),
      el('div', {}, el('h2', {}, t('noisy')), table([t('rule'), t('count')], (st.noisy_rules || []).map(([r, n]) => el('tr', {}, el('td', {}, r), el('td', {}, String(n))))))));
  };
  await page.refresh();
  ready('incidents');
}

async function incidentPage(main, id) {
  const i = await api('GET', `/api/v1/incidents/${encodeURIComponent(id)}`);
  const msg = el('div');
  const act = async (path, body) => {
    try { await api('POST', `/api/v1/incidents/${encodeURIComponent(id)}/${path}`, body); route(); } catch (e) { put(msg, errBox(e)); }
  };
  const by = me.user || 'console';
  put(main, 
    el('h1', {}, badge(i.severity), ' ', i.title),
    el('div', { class: 'row' },
      el('span', { class: `badge ${i.state}`, 'data-test': 'incident-state' }, t(i.state) || i.state),
      el('a', { href: `/api/v1/incidents/${encodeURIComponent(id)}/report`, download: `${id}.md`, 'data-test': 'report' }, t('report')),
      isAdmin() && i.state === 'open' ? el('button', { 'data-test': 'incident-ack', onclick: () => act('ack', { by }) }, t('ack')) : null,
      isAdmin() && i.state !== 'resolved' ? el('button', { class: 'danger', 'data-test': 'incident-resolve', onclick: () => act('resolve', { by }) }, t('resolve')) : null),
    msg,
    el('div', { class: 'grid2' },
      el('div', { class: 'panel' }, el('dl', { class: 'kv' },
        [[t('opened'), when(i.opened_at)], [t('acknowledged'), i.acked_at ? `${when(i.acked_at)} · ${i.acked_by || ''}` : '—'],
          [t('resolved'), i.resolved_at ? `${when(i.resolved_at)} · ${i.resolved_by || ''}` : '—'],
          [t('mtta'), dur(i.time_to_ack_seconds)], [t('mttr'), dur(i.time_to_resolve_seconds)],
          [t('category'), i.category], [t('outage'), i.outage],
          [t('hosts'), (i.hosts || []).join(', ') || '—'], [t('service'), (i.services || []).join(', ') || '—'],
          [t('remediation'), i.first_remediation_at ? `${when(i.first_remediation_at)} → ${when(i.remediated_at)}` : '—'],
          [t('owner'), i.owner || '—'], [t('rootCause'), i.root_cause ? `${i.root_cause.category}: ${i.root_cause.text}` : '—'],
          [t('impact'), i.impact || '—'],
          [t('changes'), (i.changes || []).map((c) => `${when(c.start)} ${c.kind} ${c.by}: ${c.summary}`).join('; ') || '—'],
        ].map(([k, v]) => [el('dt', {}, k), el('dd', {}, String(v ?? '—'))]))),
      el('div', { class: 'panel' },
        el('h2', {}, t('alerts')),
        table([t('rule'), t('level')], Object.entries(i.alerts || {}).map(([k, s]) => el('tr', {}, el('td', { class: 'mono' }, s.rule || k), el('td', {}, s.level ? badge(s.level) : '—')))),
        isAdmin() ? el('form', {
          class: 'stack', 'data-test': 'note-form', style: 'margin-top:.8rem',
          onsubmit: (ev) => { ev.preventDefault(); act('notes', { by, text: ev.target.text.value }); },
        }, el('label', {}, t('note'), el('textarea', { name: 'text', rows: 2, required: true })), el('button', { type: 'submit' }, t('addNote'))) : null,
        isAdmin() ? el('form', {
          class: 'stack', 'data-test': 'feedback-form', style: 'margin-top:.8rem',
          onsubmit: (ev) => {
            ev.preventDefault();
            const f = ev.target;
            act('feedback', { by, rule: f.rule.value, verdict: f.verdict.value, comment: f.comment.value });
          },
        }, el('h2', {}, t('feedback')),
        el('label', {}, t('rule'), el('select', { name: 'rule' },
          [...new Set(Object.values(i.alerts || {}).map((s) => s.rule))].map((r) => el('option', { value: r }, r)))),
        el('label', {}, t('verdict'), el('select', { name: 'verdict' },
          ['useful', 'noise', 'wrong_level', 'duplicate'].map((v) => el('option', { value: v }, t(`v.${v}`))))),
        el('label', {}, t('comment'), el('input', { name: 'comment' })),
        el('button', { type: 'submit' }, t('sendFeedback'))) : null)),
    el('h2', {}, t('timeline')),
    el('div', { class: 'panel' }, el('ol', { class: 'timeline', 'data-test': 'timeline' },
      (i.timeline || []).map((e) => el('li', { 'data-kind': e.kind }, el('time', { datetime: e.at }, when(e.at)), el('span', { class: 'chip' }, e.kind), el('span', {}, e.text))))));
  ready('incident');
}

async function silencesPage(main, hash) {
  const from = query(hash).get('from');
  const box = el('div', { class: 'panel' });
  const msg = el('div');
  let prefill = [{ name: 'alertname', op: '=', value: '' }];
  if (from) {
    const a = (await api('GET', '/api/v1/alerts')).alerts.find((x) => x.id === from);
    if (a) prefill = Object.entries(a.labels).filter(([k]) => ['alertname', 'host', 'service', 'instance', 'probe'].includes(k)).map(([name, value]) => ({ name, op: '=', value }));
  }
  const rows = el('div', { class: 'stack', 'data-test': 'matchers' });
  const preview = el('div', { 'data-test': 'preview' });
  let timer = null;
  const matchers = () => [...rows.children].map((r) => {
    const [n, o, v] = r.querySelectorAll('input,select');
    return { name: n.value.trim(), value: v.value, isRegex: o.value.includes('~'), isEqual: !o.value.startsWith('!') };
  }).filter((m) => m.name);
  const updatePreview = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const ms = matchers();
        if (!ms.length) { put(preview); return; }
        const r = await api('POST', '/api/v1/silences/preview', { matchers: ms });
        put(preview, el('h2', {}, `${t('preview')} (${r.alerts.length})`),
          el('ul', {}, r.alerts.slice(0, 50).map((a) => el('li', { 'data-alert': a.id }, badge(a.level), ' ', a.rule, ' ', chips(a.labels, ['alertname'])))));
      } catch (e) { put(preview, errBox(e)); }
    }, 250);
  };
  const addRow = (m) => rows.append(el('div', { class: 'row' },
    el('input', { value: m.name, placeholder: t('name'), 'aria-label': t('name'), oninput: updatePreview }),
    el('select', { 'aria-label': t('op'), onchange: updatePreview }, ['=', '!=', '=~', '!~'].map((o) => el('option', { value: o, selected: o === m.op }, o))),
    el('input', { value: m.value, placeholder: t('mvalue'), 'aria-label': t('mvalue'), oninput: updatePreview })));
  prefill.forEach(addRow);
  const form = isAdmin() ? el('form', {
    class: 'panel stack', 'data-test': 'silence-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const body = { matchers: matchers(), createdBy: me.user || 'console', comment: f.comment.value };
      if (f.recurring.checked) {
        body.schedule = { days: f.days.value.split(',').map((d) => d.trim()).filter(Boolean), start: f.wstart.value, end: f.wend.value, ...wallClock() };
        if (f.duration.value) body.duration = f.duration.value;
      } else body.duration = f.duration.value || '2h';
      try { await api('POST', '/api/v1/silences', body); put(msg, el('p', { class: 'ok' }, t('saved'))); page.refresh(); } catch (e) { put(msg, errBox(e)); }
    },
  }, el('h2', {}, `${t('create')} · ${t('silences')}`),
  el('label', {}, t('matchers')), rows,
  el('button', { type: 'button', class: 'plain', onclick: () => { addRow({ name: '', op: '=', value: '' }); } }, t('addMatcher')),
  el('div', { class: 'row' }, el('label', {}, `${t('duration')} (2h, 30m, 1d)`, el('input', { name: 'duration', value: '2h', size: 6 })),
    el('label', {}, t('comment'), el('input', { name: 'comment', required: true, 'data-test': 'silence-comment' }))),
  el('details', {}, el('summary', {}, t('recurring')),
    el('div', { class: 'row' }, el('label', {}, el('input', { type: 'checkbox', name: 'recurring' }), t('recurring')),
      el('label', {}, t('weekdays'), el('input', { name: 'days', placeholder: 'sat,sun' })),
      el('label', {}, t('start'), el('input', { name: 'wstart', value: '02:00', size: 5 })),
      el('label', {}, t('end'), el('input', { name: 'wend', value: '04:00', size: 5 })))),
  el('button', { type: 'submit', 'data-test': 'silence-create' }, t('create')), msg, preview) : null;
  put(main, el('h1', {}, t('silences')), form, box);
  page.refresh = async () => {
    const s = (await api('GET', '/api/v1/silences')).silences;
    put(box, table([t('state'), t('matchers'), t('start'), t('end'), t('createdBy'), t('comment'), ''],
      s.map((x) => el('tr', { 'data-silence': x.id, 'data-state': x.state },
        el('td', {}, t(`s.${x.state}`)), el('td', {}, (x.matchers || []).map((m) => el('span', { class: 'chip' }, `${m.name}${m.isEqual === false ? '!' : ''}${m.isRegex ? '=~' : '='}${m.value}`))),
        el('td', {}, when(x.startsAt)), el('td', {}, x.schedule ? `${(x.schedule.days || []).join(',') || '*'} ${x.schedule.start}–${x.schedule.end} ${x.schedule.timezone || x.schedule.utcOffset || 'UTC'}` : when(x.endsAt)),
        el('td', {}, x.createdBy), el('td', {}, x.comment),
        el('td', {}, isAdmin() && x.state !== 'expired' ? el('button', {
          class: 'plain', 'data-test': 'expire',
          onclick: async () => { try { await api('DELETE', `/api/v1/silences/${x.id}`); page.refresh(); } catch (e) { put(msg, errBox(e)); } },
        }, t('expire')) : null))), { test: 'silences' }));
  };
  await page.refresh();
  updatePreview();
  ready('silences');
}
// The browser's time zone, so a window keeps its local time across daylight saving changes;
// today's offset where the browser cannot name its zone.
function wallClock() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && zone !== 'Etc/Unknown') return { timezone: zone };
  const m = -new Date().getTimezoneOffset();
  return { utcOffset: `${m < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(m) / 60))}:${pad(Math.abs(m) % 60)}` };
}

function spark(values) {
  const ys = values.map(([, y]) => +y).filter(isFinite);
  if (!ys.length) return el('span', { class: 'muted' }, '—');
  const [a, b] = [Math.min(...ys), Math.max(...ys)];
  const pts = values.map(([, y], i) => `${(i / Math.max(1, values.length - 1)) * 118 + 1},${27 - ((+y - a) / ((b - a) || 1)) * 26}`);
  return sv('svg', { class: 'spark', viewBox: '0 0 120 28' }, sv('polyline', { points: pts.join(' ') }));
}
let hostPage = 0;
async function hostsPage(main) {
  const box = el('div', { class: 'panel' }), msg = el('div');
  put(main, el('h1', {}, t('hosts')), msg, box);
  // A host that stopped reporting on purpose (decommissioned) is taken out of service: no more
  // HostDown, its alerts resolved. Offered for hosts down only: a running agent brings its
  // host straight back.
  const retire = (h) => (isAdmin() && !h.up ? el('button', {
    class: 'plain', 'data-test': 'retire', title: t('retireHint'),
    onclick: async () => { try { await api('DELETE', `/api/v1/hosts/${encodeURIComponent(h.host)}`); page.refresh(); } catch (e) { put(msg, errBox(e)); } },
  }, t('retire')) : null);
  page.refresh = async () => {
    const hosts = (await api('GET', '/api/v1/hosts')).hosts.sort((x, y) => (x.up - y.up) || x.host.localeCompare(y.host));
    const per = 50, pages = Math.max(1, Math.ceil(hosts.length / per));
    hostPage = Math.min(hostPage, pages - 1);
    const shown = hosts.slice(hostPage * per, hostPage * per + per);
    const re = shown.map((h) => h.host.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
    let cpu = [], mem = [];
    if (shown.length) {
      [cpu, mem] = await Promise.all([
        queryRange(`host_cpu_utilisation_ratio{host=~"${re}"}`, 3600).catch(() => []),
        queryRange(`1 - node_memory_MemAvailable_bytes{host=~"${re}"} / node_memory_MemTotal_bytes{host=~"${re}"}`, 3600).catch(() => []),
      ]);
    }
    const of = (r, h) => (r.find((s) => s.metric.host === h) || { values: [] }).values;
    put(box, table([t('host'), t('state'), t('lastSeen'), { label: t('interval'), cls: 'hide-s' }, t('cpu'), { label: t('memory'), cls: 'hide-s' }, ''],
      shown.map((h) => el('tr', { 'data-host': h.host },
        el('td', {}, h.host), el('td', {}, el('span', { class: `badge ${h.up ? 'ok' : 'critical'}` }, h.up ? t('up') : t('down'))),
        el('td', {}, when(h.lastSeen)), el('td', { class: 'hide-s' }, dur(h.intervalSeconds)),
        el('td', {}, spark(of(cpu, h.host))), el('td', { class: 'hide-s' }, spark(of(mem, h.host))), el('td', {}, retire(h)))), { test: 'hosts' }),
    pages > 1 ? el('div', { class: 'row' },
      el('button', { class: 'plain', disabled: hostPage === 0, onclick: () => { hostPage--; page.refresh(); } }, '‹'),
      `${hostPage + 1} / ${pages}`,
      el('button', { class: 'plain', disabled: hostPage >= pages - 1, onclick: () => { hostPage++; page.refresh(); } }, '›')) : null);
  };
  await page.refresh();
  ready('hosts');
}

async function probesPage(main) {
  const box = el('div', { class: 'panel' });
  put(main, el('h1', {}, t('probes')), box);
  page.refresh = async () => {
    const [succ, durs] = await Promise.all([instant('probe_success'), instant('probe_duration_seconds')]);
    const d = (m) => durs.find((s) => subset(s.metric, m));
    const rows = succ.sort((a, b) => (+a.value[1] - +b.value[1]) || JSON.stringify(a.metric).localeCompare(JSON.stringify(b.metric)));
    put(box, table([t('probe'), t('host'), t('state'), t('duration'), t('labels')],
      rows.map((s) => el('tr', {},
        el('td', {}, s.metric.probe || s.metric.name || '—'), el('td', {}, s.metric.host || '—'),
        el('td', {}, el('span', { class: `badge ${+s.value[1] === 1 ? 'ok' : 'critical'}` }, +s.value[1] === 1 ? t('success') : t('failing'))),
        el('td', {}, d(s.metric) ? `${num(+d(s.metric).value[1])} s` : '—'),
        el('td', {}, chips(s.metric, ['__name__', 'host', 'probe'])))), { test: 'probes' }));
  };
  await page.refresh();
  ready('probes');
}

// Each service's objectives from the series the collector derives every 10 s
// (docs/SERVICE-LEVELS.md), and the changes recorded over the last week.
const SPEEDS = [['fast', 'critical'], ['slow', 'warning'], ['ticket', 'warning']];
async function sloPage(main) {
  const box = el('div', { class: 'panel' });
  const changes = el('div', { class: 'panel' });
  put(main, el('h1', {}, t('slo')), box, el('h2', {}, t('recentChanges')), changes);
  page.refresh = async () => {
    const [obj, left, burn, cond, ch] = await Promise.all([
      instant('tocsin_slo_objective'), instant('tocsin_slo_error_budget_remaining'),
      instant('tocsin_slo_burn_rate{window=~"1h|6h"}'), instant('tocsin_slo_burn_condition'),
      api('GET', '/api/v1/changes'),
    ]);
    const of = (list, m, extra = {}) => list.find((s) => s.metric.service === m.service && s.metric.sli === m.sli
      && Object.entries(extra).every(([k, v]) => s.metric[k] === v));
    const v = (s) => (s ? +s.value[1] : null);
    const pct = (x, digits) => (x === null ? '—' : `${(x * 100).toFixed(digits)} %`);
    const rows = obj.sort((a, b) => a.metric.service.localeCompare(b.metric.service) || (a.metric.sli || '').localeCompare(b.metric.sli || ''));
    put(box, table([t('service'), t('indicator'), { label: t('objective'), cls: 'hide-s' }, t('budgetLeft'), { label: `${t('burn')} 1h`, cls: 'right hide-s' }, { label: `${t('burn')} 6h`, cls: 'right hide-s' }, t('conditions')],
      rows.map((o) => {
        const m = o.metric;
        const b = v(of(left, m));
        const holding = SPEEDS.filter(([sp]) => (v(of(cond, m, { speed: sp })) ?? 0) >= 1);
        return el('tr', { 'data-service': m.service, 'data-sli': m.sli || '' },
          el('td', {}, m.service), el('td', {}, t(`sli.${m.sli}`)), el('td', { class: 'hide-s' }, pct(v(o), 2)),
          el('td', {}, el('span', { class: `badge ${b === null ? '' : b < 0 ? 'critical' : b < 0.25 ? 'warning' : 'ok'}`, 'data-test': 'budget' }, pct(b, 1))),
          el('td', { class: 'right hide-s' }, num(v(of(burn, m, { window: '1h' })))),
          el('td', { class: 'right hide-s' }, num(v(of(burn, m, { window: '6h' })))),
          el('td', { 'data-test': 'conditions' }, holding.length ? holding.map(([sp, lvl]) => el('span', { class: `badge ${lvl}` }, t(`c.${sp}`))) : '—'));
      }), { test: 'slo', empty: t('noObjectives') }));
    const list = ch.changes.slice().sort((a, b) => b.start_ms - a.start_ms);
    const link = (u) => (/^https?:\/\//.test(u || '') ? el('a', { href: u, rel: 'noopener noreferrer', target: '_blank' }, u) : (u || '—'));
    put(changes, table([t('start'), t('service'), { label: t('kind'), cls: 'hide-s' }, t('summary'), { label: t('by'), cls: 'hide-s' }, { label: t('link'), cls: 'hide-s' }],
      list.map((c) => el('tr', { 'data-change': String(c.id) },
        el('td', {}, when(c.start)), el('td', {}, c.service), el('td', { class: 'hide-s' }, c.kind), el('td', {}, c.summary),
        el('td', { class: 'hide-s' }, c.by), el('td', { class: 'hide-s' }, link(c.link)))), { test: 'changes' }));
  };
  await page.refresh();
  ready('slo');
}

// The daily inspection and the weekly and monthly reports as the collector sends them, over
// the period up to now, in the console's language.
const REPORTS = ['daily', 'weekly', 'monthly'];
async function reportsPage(main, hash) {
  const kind = REPORTS.includes(query(hash).get('kind')) ? query(hash).get('kind') : 'daily';
  const path = `/api/v1/reports/${kind}?${new URLSearchParams({ locale: lang })}`;
  const text = await api('GET', path, undefined, true);
  put(main, el('h1', {}, t('reports')),
    el('div', { class: 'row' },
      REPORTS.map((k) => el('a', { href: `#/reports?kind=${k}`, class: k === kind ? 'on' : '', 'data-report': k },
        el('button', { class: k === kind ? '' : 'plain', type: 'button' }, t(`r.${k}`)))),
      el('a', { href: path, download: `${kind}.md`, 'data-test': 'report-download' }, el('button', { class: 'plain', type: 'button' }, t('download')))),
    el('div', { class: 'panel' }, el('pre', { class: 'report', 'data-test': 'report' }, text)));
  ready('reports');
}

async function rulesPage(main) {
  const rules = (await api('GET', '/api/v1/rules')).rules;
  put(main, el('h1', {}, t('rules')), el('div', { class: 'panel' },
    table([t('rule'), t('thresholds'), t('firing'), { label: t('expr'), cls: 'hide-s' }, { label: t('source'), cls: 'hide-s' }],
      rules.map((r) => el('tr', { 'data-rule': r.name },
        el('td', {}, r.name, r.dynamic ? el('span', { class: 'flag' }, t('dynamic')) : null,
          r.type === 'recording' ? el('span', { class: 'flag' }, t('recording')) : null,
          r.interval ? el('span', { class: 'flag' }, `${t('everyInterval')} ${dur(r.interval)}`) : null),
        el('td', {}, Object.entries(r.levels).map(([l, s]) => el('div', {}, badge(l), ` ${s.onScore ? 'score ' : ''}${s.op} ${s.threshold}${s.recover ? ` ↺ ${s.recover.op} ${num(s.recover.threshold)}` : ''}${s.for ? ` · ${dur(s.for)}` : ''}`))),
        el('td', {}, Object.entries(r.firing).map(([l, n]) => el('span', { class: `badge ${l}` }, `${n}`)), r.pending ? el('span', { class: 'badge' }, `${r.pending}`) : null),
        el('td', { class: 'mono hide-s' }, r.expr), el('td', { class: 'mono hide-s' }, r.source))), { test: 'rules' })));
  ready('rules');
}

async function notificationsPage(main, hash) {
  const status = query(hash).get('status') || 'dead';
  const box = el('div', { class: 'panel' });
  const msg = el('div');
  put(main, el('h1', {}, t('notifications')),
    el('div', { class: 'filters' }, el('label', {}, t('status'), el('select', { onchange: (e) => go(`#/notifications?status=${e.target.value}`) },
      ['dead', 'pending', 'delivered'].map((s) => el('option', { value: s, selected: s === status }, s))))), msg, box);
  page.refresh = async () => {
    const n = (await api('GET', `/api/v1/notifications?status=${status}&limit=200`)).notifications;
    put(box, table([t('receiver'), t('kind'), t('created'), t('attempts'), t('lastError'), ''],
      n.map((x) => el('tr', { 'data-notification': x.id },
        el('td', {}, x.receiver), el('td', {}, `${x.kind || ''} ${x.notificationStatus || ''}`), el('td', {}, when(x.createdAt)),
        el('td', {}, String(x.attempts)), el('td', { class: 'mono' }, x.lastError || ''),
        el('td', {}, isAdmin() && x.status === 'dead' ? el('button', {
          class: 'plain', onclick: async () => { try { await api('POST', `/api/v1/notifications/${x.id}/retry`); page.refresh(); } catch (e) { put(msg, errBox(e)); } },
        }, t('retry')) : null))), { test: 'notifications' }));
  };
  await page.refresh();
  ready('notifications');
}

async function auditPage(main) {
  const rows = (await api('GET', '/api/v1/audit?limit=300')).audit;
  put(main, el('h1', {}, t('audit')), el('div', { class: 'panel' },
    table([t('created'), t('actor'), t('event'), t('detail')], rows.map((r) => el('tr', { 'data-event': r.event },
      el('td', {}, when(r.at)), el('td', {}, r.actor), el('td', {}, r.event), el('td', { class: 'mono' }, JSON.stringify(r.detail)))), { test: 'audit' })));
  ready('audit');
}

async function tokensPage(main) {
  if (!isAdmin()) { put(main, el('p', { class: 'muted' }, t('readOnly'))); return; }
  const box = el('div', { class: 'panel' });
  const msg = el('div');
  put(main, el('h1', {}, t('tokens')),
    el('form', {
      class: 'panel row',
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const r = await api('POST', '/api/v1/tokens', { host: ev.target.host.value, comment: ev.target.comment.value });
          put(msg, el('p', { class: 'ok' }, `${t('newToken')}: `, el('code', { class: 'mono', 'data-test': 'new-token' }, r.token)));
          page.refresh();
        } catch (e) { put(msg, errBox(e)); }
      },
    }, el('label', {}, t('host'), el('input', { name: 'host', required: true })), el('label', {}, t('comment'), el('input', { name: 'comment' })),
    el('button', { type: 'submit' }, t('issue'))), msg, box);
  page.refresh = async () => {
    const list = (await api('GET', '/api/v1/tokens')).tokens;
    put(box, table(['id', t('host'), t('comment'), t('created'), t('revoked'), ''], list.map((x) => el('tr', {},
      el('td', {}, String(x.id)), el('td', {}, x.host), el('td', {}, x.comment), el('td', {}, when(x.createdAt)), el('td', {}, when(x.revokedAt)),
      el('td', {}, x.revokedAt ? null : el('button', {
        class: 'danger', onclick: async () => { try { await api('DELETE', `/api/v1/tokens/${x.id}`); page.refresh(); } catch (e) { put(msg, errBox(e)); } },
      }, t('revoke')))))));
  };
  await page.refresh();
  ready('tokens');
}

// --- routing and live updates -----------------------------------------------------------
const PAGES = {
  '': ['overview', overview, true], alerts: ['alerts', alertsPage], alert: ['alerts', alertPage, true],
  incidents: ['incidents', incidentsPage], incident: ['incidents', incidentPage], slo: ['slo', sloPage], reports: ['reports', reportsPage], silences: ['silences', silencesPage],
  hosts: ['hosts', hostsPage], probes: ['probes', probesPage], rules: ['rules', rulesPage, true],
  notifications: ['notifications', notificationsPage], audit: ['audit', auditPage, true], tokens: ['tokens', tokensPage],
};
async function route() {
  const my = ++gen;
  const hash = location.hash || '#/';
  const [path] = hash.slice(2).split('?');
  const [name, arg] = path.split('/');
  const main = document.getElementById('main');
  delete document.body.dataset.ready;
  if (!me) {
    try { me = await api('GET', '/api/v1/session'); } catch (_) { me = null; }
  }
  if (my !== gen) return;
  if (!me || name === 'login') {
    // Open without a credential (loopback): signing in still gives a name and the admin role.
    if (me && !me.open && name === 'login') { go('#/'); return; }
    header(null);
    loginPage(main);
    ready('login');
    return;
  }
  const [nav, fn, rerender] = PAGES[name] || PAGES[''];
  header(nav);
  page = { refresh: null, rerender: rerender ? () => fn(main, arg ?? hash) : null };
  try {
    await fn(main, arg ?? hash);
  } catch (e) {
    if (my === gen) put(main, errBox(e));
  }
}
async function tick() {
  if (document.hidden || !me || !page) return;
  const a = document.activeElement;
  if (a && ['INPUT', 'TEXTAREA', 'SELECT'].includes(a.tagName)) return;
  const my = gen;
  try {
    if (page.refresh) await page.refresh();
    else if (page.rerender && my === gen) await page.rerender();
  } catch (_) { /* shown at the next navigation */ }
}
const theme = localStorage.getItem('tocsin.theme');
if (theme) document.documentElement.dataset.theme = theme;
document.documentElement.lang = lang;
window.addEventListener('hashchange', route);
setInterval(tick, 3000);
route();
