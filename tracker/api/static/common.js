// Shared by the parent, school and city pages: words in Korean and English, sign-in, the API, the map.
"use strict";

const WORDS = {
  en: {
    // the school's live map: pushed over its socket, or polled while that is down (school.js)
    "live.pushed": "Live: changes shown as they happen", "live.polling": "Live link down: checking every 5 s",
    "lang.switch": "한국어", "lang.switch.label": "한국어 — Switch language to Korean", "app.parent": "School route alerts",
    "signin.title": "Sign in", "signin.token": "Access token", "signin.submit": "Sign in",
    "signin.help": "Paste the token you were given, or open the sign-in link.",
    "signout": "Sign out", "loading": "Loading…", "none": "None.", "close": "Close", "save": "Save",
    "delete": "Delete", "cancel": "Cancel", "edit": "Edit", "new": "New", "name": "Name",
    "conn.live": "Live", "conn.offline": "Offline — reconnecting", "conn.connecting": "Connecting…",
    "conn.signedout": "Signed out: the token was refused", "conn.nonetwork": "No network",
    "status.in_danger_zone": "In a danger zone", "status.off_route": "Off the route",
    "status.signal_lost": "Signal lost", "status.at_school": "At school", "status.at_home": "At home",
    "status.on_route": "On the route", "status.unknown": "No position yet",
    "kind.left_route": "Left the route", "kind.danger_zone": "Danger zone", "kind.sos": "SOS",
    "kind.low_battery": "Low battery", "kind.signal_lost": "Signal lost",
    "kind.not_arrived_school": "Not at school in time", "kind.not_arrived_home": "Not home in time",
    "kind.arrived_school": "Arrived at school", "kind.arrived_home": "Arrived home",
    "kind.left_school": "Left school",
    "sev.critical": "Critical", "sev.warning": "Warning", "sev.info": "Notice",
    "state.open": "Open", "state.resolved": "Resolved", "acked": "Acknowledged",
    "ack": "Acknowledge", "ack.done": "Acknowledged",
    "children": "Children", "alerts": "Alerts", "map": "Map", "history": "Alert history",
    "steps": "Steps and deliveries", "lastseen": "Last seen", "battery": "Battery", "show": "Show on map",
    "sound.on": "Sound on", "sound.off": "Sound off", "notify.enable": "Allow notifications",
    "banner.dismiss": "Dismiss", "alerts.none": "No alerts.", "opened": "opened",
    "map.label": "Map of the child's position, today's track, route corridor and danger zones",
    "legend.track": "Today's track", "legend.route": "Route corridor", "legend.zone": "Danger zone",
    "legend.pos": "Last position", "caughtup": "Back online: {n} alert(s) updated.",
    // school page
    "school.title": "School", "routes": "Routes", "tags": "Tags", "guardians": "Guardians",
    "livemap": "All children, live", "alerts.today": "Today's alerts",
    "route.draw": "Draw a new route", "route.edit": "Edit the shape", "route.corridor": "Corridor width (m)",
    "route.mode": "How it is travelled", "mode.walk": "On foot", "mode.bicycle": "By bicycle",
    "mode.shuttle": "Academy shuttle", "mode.bus": "Bus", "route.meets": "Where the route meets danger zones",
    "meets.across": "Across {zone}: {m} m", "meets.beside": "Beside {zone}: {m} m",
    "route.windows": "Commute windows", "route.arrivals": "Expected arrivals",
    "route.windows.help": "One per line: days start-end, e.g. 0-4 07:30-09:00 (0 = Monday); a window in which the route is travelled otherwise ends with how: 0-4 07:30-09:00 walk",
    "route.arrivals.help": "One per line: days time place (school or home), e.g. 0-4 08:40 school",
    "route.saved": "Route saved.", "route.deleted": "Route deleted.", "route.drawhint":
      "Click on the map to add points; click the last point again to finish.",
    "upload": "Upload GeoJSON or GPX", "upload.file": "File", "upload.submit": "Upload",
    "upload.done": "Imported: {n} created, {u} updated.",
    "child": "Child", "route": "Route", "school": "School", "phone": "Phone", "language": "Language",
    "priority": "Priority", "kind": "Kind", "has_password": "MQTT password", "yes": "yes", "no": "no",
    "count.children": "{n} on the map", "zone.choose": "Choose a zone", "route.choose": "Choose a route", "error": "Error: {e}", "draw.finish": "Finish drawing", "alerts.withinfo": "Include notices (arrivals, battery)", "selected": "Selected",
    "col.time": "Time", "col.severity": "Severity", "col.state": "State",
    "alerts.more": "Showing {n} of {total}.",
    // city page
    "city.title": "City: danger zones", "zones": "Danger zones", "zone.draw": "Draw a new zone",
    "zone.kind": "Kind", "zone.severity": "Severity", "zone.hours": "Hours (empty: always)",
    "zone.hours.help": "One per line: days start-end, e.g. 0-6 22:00-24:00", "zone.active": "Active",
    "zone.saved": "Zone saved.", "zone.deleted": "Zone deleted.",
    "zone.drawhint": "Click on the map to add corners; click the first corner to close the shape.",
    "zone.off": "off", "zone.kind.bad": "A kind is one of the list, or a code of lowercase letters, digits and _: {word}",
    // what the map's own controls say
    "map.zoomin": "Zoom in", "map.zoomout": "Zoom out", "map.leaflet": "Leaflet, the map library",
    // kinds of danger zone (a kind the city made up itself is shown as it is)
    "zkind.construction": "Construction site", "zkind.rebuilding": "Rebuilding site", "zkind.water": "Water",
    "zkind.river": "River bank", "zkind.arterial_road": "Arterial road", "zkind.railway": "Railway",
    "zkind.industrial": "Industrial site",
    "tagkind.gps": "GPS", "tagkind.rfid": "RFID card", "lang.ko": "Korean", "lang.en": "English",
    "place.school": "school", "place.home": "home",
    // an alert in a sentence (the page's own words; the server's text is in the guardian's language):
    // {place} is the time and where, {time} and {last} the time (alertSentence)
    "text.left_route.open": "{child} has left the route to school ({place}).",
    "text.left_route.resolved": "{child} is back on the route to school.",
    "text.danger_zone.open": "{child} is in a danger zone: {zone} ({place}).",
    "text.danger_zone.resolved": "{child} has left the danger zone {zone}.",
    "text.sos.open": "SOS from {child} ({place}). Please call now.", "text.sos.resolved": "The SOS from {child} is closed.",
    "text.low_battery.open": "{child}'s tag battery is low. Please charge it tonight.",
    "text.signal_lost.open": "No signal from {child}'s tag since {last} during the school commute.",
    "text.signal_lost.resolved": "{child}'s tag is sending again ({place}).",
    "text.not_arrived_school.open": "{child} has not arrived at school by the expected time.",
    "text.not_arrived_school.resolved": "{child} has now arrived at school.",
    "text.not_arrived_home.open": "{child} has not arrived home by the expected time.",
    "text.not_arrived_home.resolved": "{child} has now arrived home.",
    "text.arrived_school.open": "{child} arrived at school ({time}).", "text.arrived_home.open": "{child} arrived home ({time}).",
    "text.left_school.open": "{child} left school ({time}).",
    // an alert's history: its steps and deliveries
    "step.opened": "opened", "step.updated": "updated", "step.delivered": "delivered",
    "step.unreachable": "not delivered", "step.suppressed": "held back (too many messages)",
    "step.cancelled": "cancelled", "step.escalated": "escalated", "step.acknowledged": "acknowledged",
    "step.resolved": "resolved", "step.noticed": "noticed",
    "channel.websocket": "this page", "channel.sms": "SMS", "channel.webhook": "school system",
    "channel.push": "notification",
    "transition.opened": "opened", "transition.escalated": "escalated", "transition.resolved": "resolved",
    "transition.updated": "updated",
    "dstate.pending": "waiting", "dstate.sending": "sending", "dstate.sent": "sent",
    "dstate.offline": "not connected", "dstate.failed": "failed", "dstate.suppressed": "held back",
    "dstate.cancelled": "cancelled",
    "detail.guardian": "guardian #{n}", "detail.attempt": "attempt {n}", "detail.level": "level {n}",
    // what went wrong, by the API's answer (the API's own detail is in English: shown on English pages)
    "err.400": "The request was refused.", "err.401": "The token was refused: sign in again.",
    "err.403": "Your sign-in may not do this.", "err.404": "Not found (or not yours to see).",
    "err.409": "This conflicts with what is registered.", "err.410": "This link has been used or has expired.",
    "err.413": "The file is too large.", "err.422": "Some values are not valid",
    "err.429": "Too many requests: try again in a moment.", "err.500": "The tracker met an error.",
    "err.503": "The tracker is not ready: try again in a moment.", "err.http": "The tracker answered {status}.",
    "err.network": "No connection to the tracker.", "err.days": "Days must be numbers 0-6 (0 = Monday): {part}",
    "enrol.404": "This sign-in link is not known: ask the school for a new one.",
    "enrol.410": "This sign-in link has been used or has expired: ask the school for a new one.",
    "field.name": "name", "field.corridor_m": "corridor width", "field.windows": "commute windows",
    "field.arrivals": "expected arrivals", "field.kind": "kind", "field.severity": "severity",
    "field.hours": "hours", "field.geometry": "shape", "field.route_id": "route",
  },
  ko: {
    "live.pushed": "실시간: 변경 즉시 표시", "live.polling": "실시간 연결 끊김: 5초마다 확인",
    "lang.switch": "English", "lang.switch.label": "English — 영어로 바꾸기", "app.parent": "통학 안전 알림",
    "signin.title": "로그인", "signin.token": "접근 토큰", "signin.submit": "로그인",
    "signin.help": "받은 토큰을 붙여 넣거나 로그인 링크를 여세요.",
    "signout": "로그아웃", "loading": "불러오는 중…", "none": "없음.", "close": "닫기", "save": "저장",
    "delete": "삭제", "cancel": "취소", "edit": "수정", "new": "새로 만들기", "name": "이름",
    "conn.live": "실시간 연결됨", "conn.offline": "연결 끊김 — 다시 연결 중", "conn.connecting": "연결 중…",
    "conn.signedout": "로그아웃됨: 토큰이 거부되었습니다", "conn.nonetwork": "네트워크 없음",
    "status.in_danger_zone": "위험 구역 안", "status.off_route": "통학로 이탈",
    "status.signal_lost": "신호 없음", "status.at_school": "학교에 있음", "status.at_home": "집에 있음",
    "status.on_route": "통학로 위", "status.unknown": "위치 정보 없음",
    "kind.left_route": "통학로 이탈", "kind.danger_zone": "위험 구역", "kind.sos": "긴급 호출(SOS)",
    "kind.low_battery": "배터리 부족", "kind.signal_lost": "신호 없음",
    "kind.not_arrived_school": "학교 미도착", "kind.not_arrived_home": "집 미도착",
    "kind.arrived_school": "학교 도착", "kind.arrived_home": "집 도착", "kind.left_school": "하교",
    "sev.critical": "긴급", "sev.warning": "경고", "sev.info": "알림",
    "state.open": "진행 중", "state.resolved": "해제됨", "acked": "확인함",
    "ack": "확인", "ack.done": "확인함",
    "children": "자녀", "alerts": "알림", "map": "지도", "history": "알림 기록",
    "steps": "처리 단계와 전송", "lastseen": "마지막 위치", "battery": "배터리", "show": "지도에서 보기",
    "sound.on": "소리 켜짐", "sound.off": "소리 꺼짐", "notify.enable": "알림 허용",
    "banner.dismiss": "닫기", "alerts.none": "알림이 없습니다.", "opened": "발생",
    "map.label": "자녀의 위치, 오늘의 이동 경로, 통학로 구간과 위험 구역 지도",
    "legend.track": "오늘의 이동", "legend.route": "통학로 구간", "legend.zone": "위험 구역",
    "legend.pos": "마지막 위치", "caughtup": "다시 연결됨: 알림 {n}건을 갱신했습니다.",
    "school.title": "학교", "routes": "통학로", "tags": "단말기", "guardians": "보호자",
    "livemap": "전체 학생 실시간 위치", "alerts.today": "오늘의 알림",
    "route.draw": "새 통학로 그리기", "route.edit": "모양 수정", "route.corridor": "구간 폭 (m)",
    "route.mode": "이동 수단", "mode.walk": "도보", "mode.bicycle": "자전거",
    "mode.shuttle": "학원 차량", "mode.bus": "버스", "route.meets": "통학로가 위험 구역과 만나는 곳",
    "meets.across": "{zone} 횡단: {m} m", "meets.beside": "{zone} 옆: {m} m",
    "route.windows": "등하교 시간", "route.arrivals": "도착 예정 시각",
    "route.windows.help": "한 줄에 하나: 요일 시작-끝, 예: 0-4 07:30-09:00 (0 = 월요일); 이동 수단이 다른 시간은 끝에 수단을 적습니다: 0-4 07:30-09:00 도보",
    "route.arrivals.help": "한 줄에 하나: 요일 시각 장소 (학교 또는 집), 예: 0-4 08:40 학교",
    "route.saved": "통학로를 저장했습니다.", "route.deleted": "통학로를 삭제했습니다.",
    "route.drawhint": "지도를 눌러 점을 추가하고, 마지막 점을 한 번 더 눌러 마치세요.",
    "upload": "GeoJSON 또는 GPX 올리기", "upload.file": "파일", "upload.submit": "올리기",
    "upload.done": "가져옴: 새로 {n}건, 갱신 {u}건.",
    "child": "학생", "route": "통학로", "school": "학교", "phone": "전화", "language": "언어",
    "priority": "순서", "kind": "종류", "has_password": "MQTT 비밀번호", "yes": "있음", "no": "없음",
    "count.children": "지도에 {n}명", "zone.choose": "구역 선택", "route.choose": "통학로 선택", "error": "오류: {e}", "draw.finish": "그리기 마치기", "alerts.withinfo": "알림성 안내 포함 (도착, 배터리)", "selected": "선택됨",
    "col.time": "시각", "col.severity": "심각도", "col.state": "상태",
    "alerts.more": "{total}건 중 {n}건을 보여 줍니다.",
    "city.title": "시: 위험 구역", "zones": "위험 구역", "zone.draw": "새 위험 구역 그리기",
    "zone.kind": "종류", "zone.severity": "심각도", "zone.hours": "시간 (비우면 항상)",
    "zone.hours.help": "한 줄에 하나: 요일 시작-끝, 예: 0-6 22:00-24:00", "zone.active": "사용",
    "zone.saved": "위험 구역을 저장했습니다.", "zone.deleted": "위험 구역을 삭제했습니다.",
    "zone.drawhint": "지도를 눌러 꼭짓점을 추가하고, 첫 꼭짓점을 눌러 닫으세요.",
    "zone.off": "꺼짐", "zone.kind.bad": "종류는 목록에서 고르거나 영문 소문자, 숫자, _ 로 된 코드로 쓰세요: {word}",
    "map.zoomin": "확대", "map.zoomout": "축소", "map.leaflet": "Leaflet 지도 라이브러리",
    "zkind.construction": "공사장", "zkind.rebuilding": "재건축 현장", "zkind.water": "물가",
    "zkind.river": "하천변", "zkind.arterial_road": "간선도로", "zkind.railway": "철도",
    "zkind.industrial": "공업 지역",
    "tagkind.gps": "GPS", "tagkind.rfid": "RFID 카드", "lang.ko": "한국어", "lang.en": "영어",
    "place.school": "학교", "place.home": "집",
    "text.left_route.open": "{child} 학생이 통학로를 벗어났습니다 ({place}).",
    "text.left_route.resolved": "{child} 학생이 통학로로 돌아왔습니다.",
    "text.danger_zone.open": "{child} 학생이 위험 구역에 있습니다: {zone} ({place}).",
    "text.danger_zone.resolved": "{child} 학생이 위험 구역 {zone}에서 벗어났습니다.",
    "text.sos.open": "{child} 학생의 긴급 호출(SOS)입니다 ({place}). 바로 연락해 주세요.",
    "text.sos.resolved": "{child} 학생의 긴급 호출이 종료되었습니다.",
    "text.low_battery.open": "{child} 학생 단말기의 배터리가 부족합니다. 오늘 밤 충전해 주세요.",
    "text.signal_lost.open": "등하교 중 {last} 이후 {child} 학생 단말기의 신호가 없습니다.",
    "text.signal_lost.resolved": "{child} 학생 단말기의 신호가 다시 잡힙니다 ({place}).",
    "text.not_arrived_school.open": "{child} 학생이 예정 시각까지 학교에 도착하지 않았습니다.",
    "text.not_arrived_school.resolved": "{child} 학생이 학교에 도착했습니다.",
    "text.not_arrived_home.open": "{child} 학생이 예정 시각까지 집에 도착하지 않았습니다.",
    "text.not_arrived_home.resolved": "{child} 학생이 집에 도착했습니다.",
    "text.arrived_school.open": "{child} 학생이 학교에 도착했습니다 ({time}).", "text.arrived_home.open": "{child} 학생이 집에 도착했습니다 ({time}).",
    "text.left_school.open": "{child} 학생이 학교를 나섰습니다 ({time}).",
    "step.opened": "발생", "step.updated": "갱신", "step.delivered": "전송됨", "step.unreachable": "전송 안 됨",
    "step.suppressed": "보류 (메시지가 너무 많음)", "step.cancelled": "취소됨", "step.escalated": "다음 보호자에게 전달",
    "step.acknowledged": "확인함", "step.resolved": "해제됨", "step.noticed": "안내됨",
    "channel.websocket": "이 페이지", "channel.sms": "문자", "channel.webhook": "학교 시스템", "channel.push": "알림",
    "transition.opened": "발생", "transition.escalated": "전달", "transition.resolved": "해제", "transition.updated": "갱신",
    "dstate.pending": "대기 중", "dstate.sending": "보내는 중", "dstate.sent": "보냄", "dstate.offline": "연결 안 됨",
    "dstate.failed": "실패", "dstate.suppressed": "보류", "dstate.cancelled": "취소됨",
    "detail.guardian": "보호자 #{n}", "detail.attempt": "{n}번째 시도", "detail.level": "{n}단계",
    "err.400": "요청이 거부되었습니다.", "err.401": "토큰이 거부되었습니다. 다시 로그인하세요.",
    "err.403": "이 로그인으로는 할 수 없는 작업입니다.", "err.404": "찾을 수 없습니다 (또는 볼 수 없습니다).",
    "err.409": "이미 등록된 내용과 충돌합니다.", "err.410": "이미 사용되었거나 만료된 링크입니다.",
    "err.413": "파일이 너무 큽니다.", "err.422": "올바르지 않은 값이 있습니다",
    "err.429": "요청이 너무 많습니다. 잠시 후 다시 시도하세요.", "err.500": "추적 서버에 오류가 났습니다.",
    "err.503": "추적 서버가 아직 준비되지 않았습니다. 잠시 후 다시 시도하세요.", "err.http": "추적 서버가 {status} 응답을 보냈습니다.",
    "err.network": "추적 서버에 연결할 수 없습니다.", "err.days": "요일은 0-6 숫자로 쓰세요 (0 = 월요일): {part}",
    "enrol.404": "알 수 없는 로그인 링크입니다. 학교에 새 링크를 요청하세요.",
    "enrol.410": "이미 사용되었거나 만료된 로그인 링크입니다. 학교에 새 링크를 요청하세요.",
    "field.name": "이름", "field.corridor_m": "구간 폭", "field.windows": "등하교 시간", "field.arrivals": "도착 예정 시각",
    "field.kind": "종류", "field.severity": "심각도", "field.hours": "시간", "field.geometry": "모양", "field.route_id": "통학로",
  },
};

// The parent page as an installed app, with push notifications (push.js, sw.js)
Object.assign(WORDS.en, {
  "push.on": "Notifications on: alerts reach this device even with the page closed.",
  "push.pageonly": "Notifications allowed: this browser shows them while the page is open.",
  "push.failed": "Notifications allowed, but this browser could not subscribe to alerts ({e}); they show while the page is open.",
  "offline.asof": "No network: the last known statuses, as of {time}.",
  // why the browser could not subscribe (push.js pushFailure: by the browser's error's kind)
  "push.why.NotAllowedError": "this browser's settings do not allow it",
  "push.why.AbortError": "the browser's push service refused or could not be reached",
  "push.why.TimeoutError": "the browser's push service did not answer",
  "push.why.other": "an unexpected error in the browser",
});
Object.assign(WORDS.ko, {
  "push.on": "알림 켜짐: 페이지를 닫아도 이 기기로 알림이 옵니다.",
  "push.pageonly": "알림 허용됨: 이 브라우저는 페이지가 열려 있을 때 알림을 보여 줍니다.",
  "push.failed": "알림은 허용되었지만 이 브라우저가 알림을 구독하지 못했습니다 ({e}). 페이지가 열려 있을 때만 알림이 옵니다.",
  "offline.asof": "네트워크 없음: {time} 기준 마지막 상태입니다.",
  "push.why.NotAllowedError": "브라우저 설정에서 허용되지 않습니다",
  "push.why.AbortError": "브라우저의 푸시 서비스가 거부했거나 연결할 수 없습니다",
  "push.why.TimeoutError": "브라우저의 푸시 서비스가 응답하지 않았습니다",
  "push.why.other": "브라우저에서 예기치 않은 오류가 났습니다",
});

function browserLang() {
  return (navigator.languages || [navigator.language || "en"]).some((l) => /^ko\b/i.test(l)) ? "ko" : "en";
}
let LANG = localStorage.getItem("tracker-lang") || browserLang();

function t(key, vars) {
  let s = (WORDS[LANG] && WORDS[LANG][key]) || WORDS.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
  return s;
}
// A word for a code the server sends (a zone's kind, a delivery's state), or the code itself when the
// tables have none (a zone kind the city made up: its own name for it).
function tOr(key, fallback, vars) { return key in WORDS.en ? t(key, vars) : String(fallback ?? ""); }
function zoneKind(kind) { return tOr(`zkind.${kind}`, kind); }
// The kinds of danger zone the tables have words for (their codes), and the code of a kind as a person
// types it: a known kind's code or its name in either language, or a code of the city's own making
// (what the API takes: a-z, 0-9, _); null for anything else.
const ZONE_KINDS = Object.keys(WORDS.en).filter((k) => k.startsWith("zkind.")).map((k) => k.slice(6));
function zoneKindCode(word) {
  const w = String(word || "").trim();
  for (const code of ZONE_KINDS) {
    if ([code, WORDS.en[`zkind.${code}`], WORDS.ko[`zkind.${code}`]].some((x) => x.toLowerCase() === w.toLowerCase())) return code;
  }
  return /^[a-z][a-z0-9_]{0,39}$/.test(w) ? w : null;
}

// An alert in a sentence, in the page's language (the server's text is in the guardian's language,
// which may not be the one this page shows), saying what the server's text says (tracker/alerts/
// messages.py): the time of the alert's last fix (else of its opening) in `timeZone`, the school's when
// the page knows it (else the browser's), and where, as latitude,longitude to 5 decimals.
function alertSentence(a, timeZone) {
  const child = a.child ? a.child.name : "";
  const zone = a.zone ? a.zone.name : "?";
  const at = (a.position && a.position.ts) || a.opened_at;
  const time = at ? clockTime(at, timeZone) : "";
  const p = a.position;
  const place = p && p.lat != null && p.lon != null ? `${time}, ${p.lat.toFixed(5)},${p.lon.toFixed(5)}` : time;
  const vars = { child, zone, place, time, last: time };
  const state = a.state === "resolved" && a.severity !== "info" ? "resolved" : "open";
  const key = `text.${a.kind}.${state}`;
  if (key in WORDS.en) return t(key, vars);
  if (`text.${a.kind}.open` in WORDS.en) return t(`text.${a.kind}.open`, vars);
  return `${child}: ${tOr("kind." + a.kind, a.kind)}${a.zone ? ` — ${zone}` : ""}`;
}

function applyWords(root) {
  document.documentElement.lang = LANG;
  (root || document).querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  (root || document).querySelectorAll("[data-i18n-label]").forEach((el) => {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  });
  (root || document).querySelectorAll("[data-i18n-title]").forEach((el) => {
    el.title = t(el.dataset.i18nTitle);
  });
  (root || document).querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  });
  MAPS.forEach(labelMap);
}

function setupLanguageSwitch(button, onChange) {
  button.addEventListener("click", () => {
    LANG = LANG === "ko" ? "en" : "ko";
    localStorage.setItem("tracker-lang", LANG);
    applyWords();
    onChange();
  });
}

const $ = (id) => document.getElementById(id);
function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
// Dates and times in the page's language ("오후 03:04:05", "3월 2일 오후 03:04"; "03:04:05 PM", "Mar 2, 03:04 PM").
const FORMATS = {
  time: { hour: "2-digit", minute: "2-digit", second: "2-digit" },
  day: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" },
};
const formatters = new Map();
function dateFormat(kind) {
  const key = `${LANG}:${kind}`;
  if (!formatters.has(key)) formatters.set(key, new Intl.DateTimeFormat(LANG, FORMATS[kind]));
  return formatters.get(key);
}
function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return dateFormat(today ? "time" : "day").format(d);
}
function fmtNow() { return dateFormat("time").format(new Date()); }
// The last midnight in a time zone (an IANA name; none, or one the browser does not know: the
// browser's own), as an instant: the wall clock there is read with Intl, and the zone's offset at
// that midnight found by two guesses (a day whose offset changes at night still gets its midnight).
function midnightIn(timeZone) {
  let f;
  try { f = new Intl.DateTimeFormat("en-US", { timeZone, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", second: "numeric" }); }
  catch (e) { const d = new Date(); d.setHours(0, 0, 0, 0); return d; }
  const wall = (at) => {  // the wall clock there at an instant, read as if it were UTC
    const p = Object.fromEntries(f.formatToParts(at).map((x) => [x.type, Number(x.value)]));
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  };
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);  // whole seconds, as the wall clock
  const today = new Date(wall(now)); today.setUTCHours(0, 0, 0, 0);  // that day's 00:00, as UTC
  let at = today.getTime() - (wall(now) - now.getTime());  // with today's offset now
  at = today.getTime() - (wall(new Date(at)) - at);  // with the offset at that midnight
  return new Date(at);
}
// Hours and minutes in the page's language ("오후 03:04", "03:04 PM") in a time zone (an IANA name; none
// or one the browser does not know: the browser's own).
function clockTime(iso, timeZone) {
  const key = `${LANG}:clock:${timeZone || ""}`;
  if (!formatters.has(key)) {
    const options = { hour: "2-digit", minute: "2-digit" };
    let f;
    try { f = new Intl.DateTimeFormat(LANG, { ...options, timeZone: timeZone || undefined }); } catch (e) { f = new Intl.DateTimeFormat(LANG, options); }
    formatters.set(key, f);
  }
  return formatters.get(key).format(new Date(iso));
}

// --- sign-in: a token per page (guardian, school staff, administrator), from `#token=` or the form ---
class Session {
  constructor(key) {
    this.key = key;
    this.token = localStorage.getItem(key) || "";
    if (location.hash.startsWith("#token=")) {
      this.token = decodeURIComponent(location.hash.slice(7));
      localStorage.setItem(key, this.token);
      history.replaceState(null, "", location.pathname);
    }
  }
  set(token) { this.token = token.trim(); localStorage.setItem(this.key, this.token); }
  clear() { this.token = ""; localStorage.removeItem(this.key); }

  async api(path, options = {}) {
    const headers = { Authorization: `Bearer ${this.token}`, ...(options.headers || {}) };
    let body = options.body;
    if (body !== undefined && !(body instanceof FormData) && typeof body !== "string") {
      body = JSON.stringify(body); headers["Content-Type"] = "application/json";
    }
    let r;
    try { r = await fetch(path, { ...options, headers, body }); } catch (e) {
      const err = new Error(t("err.network")); err.status = 0; throw err;
    }
    if (r.status === 204) return null;
    const data = await r.json().catch(() => null);
    if (!r.ok) {
      const err = new Error(describeError(data, r.status));
      err.status = r.status; throw err;
    }
    return data;
  }
}

// What went wrong, in the page's language: the API's status says what kind of problem it is; its
// `detail` (English) is added on an English page only. A 422 names the fields it is about.
function describeError(data, status, prefix) {
  const d = data && data.detail;
  const own = (key) => (prefix && `${prefix}.${status}` in WORDS.en ? t(`${prefix}.${status}`) : t(key));
  if (status === 422 && Array.isArray(d)) {
    const fields = [...new Set(d.map((e) => (e.loc || []).filter((p) => typeof p === "string" && `field.${p}` in WORDS.en).pop())
      .filter(Boolean).map((p) => t(`field.${p}`)))];
    const said = LANG === "en" ? d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ") : fields.join(", ");
    return said ? `${t("err.422")}: ${said}` : `${t("err.422")}.`;
  }
  const generic = `err.${status}` in WORDS.en ? own(`err.${status}`) : t("err.http", { status });
  return LANG === "en" && d && !Array.isArray(d) ? `${generic} (${String(d)})` : generic;
}

// Days and times typed one per line ("0-4 07:30-09:00") <-> the API's windows.
function parseDays(s) {
  const days = new Set();
  for (const part of s.split(",")) {
    const [a, b] = part.split("-").map(Number);
    if (Number.isNaN(a)) throw new Error(t("err.days", { part }));
    for (let d = a; d <= (Number.isNaN(b) || b === undefined ? a : b); d++) days.add(d);
  }
  return [...days].sort();
}
function daysText(days) {
  const d = [...days].sort();
  const contiguous = d.length > 1 && d.every((x, i) => i === 0 || x === d[i - 1] + 1);
  return contiguous ? `${d[0]}-${d[d.length - 1]}` : d.join(",");
}
// A window may end with how the route is travelled in it ("0-4 07:30-09:00 walk", "... 도보"): a
// shuttle route walked to school in the morning.
const MODES = ["walk", "bicycle", "shuttle", "bus"];
function modeCode(words) {
  const w = words.toLowerCase();
  for (const code of MODES) {
    if (w === code || w === WORDS.en[`mode.${code}`].toLowerCase() || w === WORDS.ko[`mode.${code}`]) return code;
  }
  return words; // (the API says what it takes)
}
function parseWindows(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const [days, span, ...how] = line.split(/\s+/);
    const [start, end] = (span || "").split("-");
    const w = { days: parseDays(days), start, end };
    return how.length ? { ...w, mode: modeCode(how.join(" ")) } : w;
  });
}
function windowsText(windows) {
  const how = (w) => (w.mode ? ` ${tOr(`mode.${w.mode}`, w.mode)}` : "");
  return (windows || []).map((w) => `${daysText(w.days)} ${w.start}-${w.end}${how(w)}`).join("\n");
}
// a place typed in either language ("school", "학교") is the API's "school"
function placeCode(word) {
  const w = (word || "school").toLowerCase();
  for (const code of ["school", "home"]) if (w === code || w === WORDS.ko[`place.${code}`]) return code;
  return w;
}
function parseArrivals(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const [days, time, to] = line.split(/\s+/);
    return { days: parseDays(days), time, to: placeCode(to) };
  });
}
function arrivalsText(arrivals) { return (arrivals || []).map((a) => `${daysText(a.days)} ${a.time} ${tOr(`place.${a.to}`, a.to)}`).join("\n"); }

// --- the map: Seoul's districts as the base layer, tiles only when TRACKER_TILE_URL names some ---
const CONFIG = window.TRACKER_CONFIG || { tileUrl: "", tileAttribution: "" };

// The maps of the page, relabelled when the language changes (their zoom buttons, the attribution,
// Leaflet-Geoman's drawing hints).
const MAPS = [];
function labelMap(map) {
  if (map.zoomButtons) map.zoomButtons.remove();
  map.zoomButtons = L.control.zoom({ zoomInTitle: t("map.zoomin"), zoomOutTitle: t("map.zoomout") }).addTo(map);
  map.attributionControl.setPrefix(`<a href="https://leafletjs.com" title="${esc(t("map.leaflet"))}">Leaflet</a>`);
  if (map.pm && map.pm.setLang) map.pm.setLang(LANG);
}

function makeMap(element) {
  const map = L.map(element, { zoomSnap: 0.5, preferCanvas: false, keyboard: true, zoomControl: false }).setView([37.55, 126.99], 11);
  MAPS.push(map); labelMap(map);
  map.createPane("districts").style.zIndex = 250;
  if (CONFIG.tileUrl) {
    L.tileLayer(CONFIG.tileUrl, { maxZoom: 19, attribution: esc(CONFIG.tileAttribution) }).addTo(map);
  } else {
    element.classList.add("no-tiles");
  }
  fetch("/static/seoul-districts.geojson").then((r) => r.json()).then((fc) => {
    const districts = L.geoJSON(fc, {
      pane: "districts", interactive: false, pmIgnore: true,
      style: { color: "#6b7280", weight: 1, fillColor: "#e5e7eb", fillOpacity: CONFIG.tileUrl ? 0 : 0.6 },
    }).addTo(map);
    if (CONFIG.tileUrl) return;
    // the districts' names, where they can be read: from the whole city down to a neighbourhood
    const labels = L.layerGroup();
    districts.eachLayer((layer) => {
      const f = layer.feature;
      labels.addLayer(L.tooltip({ permanent: true, direction: "center", className: "district-label", interactive: false })
        .setLatLng(layer.getBounds().getCenter()).setContent(esc(f.properties[LANG] || f.properties.en)));
    });
    const show = () => { if (map.getZoom() >= 11 && map.getZoom() <= 14) labels.addTo(map); else labels.remove(); };
    map.on("zoomend", show); show();
  });
  return map;
}

// A route's corridor drawn to scale: a line whose stroke is the corridor's full width in pixels at the
// current zoom (a thick stroke with round caps and joins is the line's buffer).
function metresPerPixel(map, lat) { return 40075016.686 * Math.cos((lat * Math.PI) / 180) / 2 ** (map.getZoom() + 8); }
function corridorLayer(map, feature, style) {
  const group = L.featureGroup();
  const coords = feature.geometry.type === "LineString" ? [feature.geometry.coordinates] : feature.geometry.coordinates;
  const latlngs = coords.map((line) => line.map(([lon, lat]) => [lat, lon]));
  const band = L.polyline(latlngs, { color: style.band || "#2563eb", opacity: 0.22, lineCap: "round", lineJoin: "round", interactive: false });
  const centre = L.polyline(latlngs, { color: style.line || "#1d4ed8", weight: 3, dashArray: "6 6" });
  group.addLayer(band).addLayer(centre);
  const fit = () => {
    const lat = latlngs[0][0][0];
    band.setStyle({ weight: Math.max(4, (2 * feature.properties.corridor_m) / metresPerPixel(map, lat)) });
  };
  map.on("zoomend", fit); fit();
  group.centre = centre;
  group.off_zoom = () => map.off("zoomend", fit);
  return group;
}

// Whether a feature lies within about `deg` degrees (0.01: about 1 km) of some bounds.
function near(bounds, feature, deg = 0.01) {
  const sw = bounds.getSouthWest(), ne = bounds.getNorthEast();
  return L.latLngBounds([sw.lat - deg, sw.lng - deg], [ne.lat + deg, ne.lng + deg]).intersects(L.geoJSON(feature).getBounds());
}

const ZONE_STYLE = { color: "#b91c1c", weight: 2, fillColor: "#ef4444", fillOpacity: 0.25 };
const STATUS_COLOUR = {
  in_danger_zone: "#b91c1c", off_route: "#c2410c", signal_lost: "#6d28d9", at_school: "#047857",
  at_home: "#0e7490", on_route: "#1d4ed8", unknown: "#4b5563",
};

function setupSignIn(session, formId, onSignedIn) {
  const form = $(formId);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    session.set(form.querySelector("input").value);
    onSignedIn();
  });
}
