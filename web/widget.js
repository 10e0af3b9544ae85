/*
 * Parley chat widget (widget.js).
 *
 * A website embeds it with one tag:
 *   <script src="https://NODE/widget.js" data-workspace="demo" async></script>
 * It adds a launcher button and a chat panel to the page and talks to the
 * Parley node it was loaded from with the Parley wire protocol, version 1:
 * JSON frames over WebTransport at /v1/wt where the browser and the network
 * allow it, else over a WebSocket at /v1/ws (see docs/protocol.md). The
 * panel's data-transport attribute says which ("wt" or "ws") is in use.
 *
 * It is one file for the page on purpose, because it runs on third-party
 * sites: no dependencies, no build step, no inline styles, no eval, so it works
 * under a strict Content-Security-Policy. Untrusted text (message bodies,
 * names) is only ever written with textContent. What it shares with the
 * agent console (the connection, resume cursors, message merging) is in
 * static/client.js: the node serves /widget.js as that file followed by this
 * one, in one block (node/assets.go), so this code sees ParleyClient and the
 * page does not.
 *
 * Optional verified identity: data-identity-token (a signed, expiring JWT),
 * or data-user-id and data-user-hash, and data-name on the script tag, or
 * window.Parley.init({identityToken, userId, userHash, name}).
 *
 * The visitor's context goes to the agents with the conversation (a
 * context frame, docs/protocol.md): the page's URL, the referrer, the
 * browser's language, and the attributes the site gives, as JSON in
 * data-attributes on the script tag or with
 * window.Parley.setAttributes({plan: 'pro'}) (at most 20; keys of
 * A-Z a-z 0-9 _ . -, up to 40 characters; values up to 256 characters).
 */
(() => {
  'use strict';

  if (window.__parleyWidgetLoaded) return;
  window.__parleyWidgetLoaded = true;

  const C = ParleyClient;
  const { PROTOCOL_VERSION, MAX_BODY, TYPING_THROTTLE_MS, TYPING_IDLE_MS, ACK_TIMEOUT_MS } = C;
  const { storage, newId, clean, h, icon } = C;

  // ---------------------------------------------------------------- setup

  const script =
    document.currentScript ||
    document.querySelector('script[data-workspace][src*="widget.js"]') ||
    document.querySelector('script[data-workspace]');
  if (!script || !script.src) return;

  const SRC = new URL(script.src, location.href);
  const ORIGIN = SRC.origin;
  const WS_URL = (SRC.protocol === 'https:' ? 'wss://' : 'ws://') + SRC.host + '/v1/ws';
  const WORKSPACE = (script.dataset.workspace || '').trim();
  if (!/^[a-z0-9_-]{1,64}$/.test(WORKSPACE)) {
    console.warn('Parley: the script tag needs a valid data-workspace attribute');
    return;
  }

  // The site's attributes of the visitor (see the header), kept as the
  // node takes them.
  const MAX_ATTRS = 20;
  const attributes = {};
  function setAttributes(obj) {
    if (!obj || typeof obj !== 'object') return;
    for (const [k, v] of Object.entries(obj)) {
      if (!/^[A-Za-z0-9_.-]{1,40}$/.test(k)) continue;
      if (v == null) {
        delete attributes[k];
        continue;
      }
      if (!(k in attributes) && Object.keys(attributes).length >= MAX_ATTRS) continue;
      attributes[k] = String(v).replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 256);
    }
  }
  try { setAttributes(JSON.parse(script.dataset.attributes || '{}')); } catch (e) {
    console.warn('Parley: data-attributes is not a JSON object');
  }
  const webURL = (u) => {
    try {
      const p = new URL(u);
      if ((p.protocol !== 'http:' && p.protocol !== 'https:') || p.username || p.password) return '';
      p.hash = '';
      const s = p.href;
      return s.length <= 2048 ? s : (p.origin + p.pathname).slice(0, 2048);
    } catch (e) {
      return '';
    }
  };
  function contextNow() {
    const x = {};
    const url = webURL(location.href);
    const ref = webURL(document.referrer || '');
    const lang = navigator.language || '';
    if (url) x.url = url;
    if (ref) x.referrer = ref;
    if (/^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}$/.test(lang)) x.language = lang;
    if (Object.keys(attributes).length) x.attrs = Object.assign({}, attributes);
    return x;
  }

  const KEY_VISITOR = 'parley:' + WORKSPACE + ':visitor';
  const KEY_OPEN = 'parley:' + WORKSPACE + ':open';
  const KEY_TRANSCRIPT = 'parley:' + WORKSPACE + ':transcript';

  const identity = {
    userId: script.dataset.userId || '',
    userHash: script.dataset.userHash || '',
    identityToken: script.dataset.identityToken || '',
    name: script.dataset.name || '',
  };
  // tokenSubject reads the user ID of an identity token, unverified (the
  // node verifies it): it only names where this browser keeps the
  // conversation.
  const tokenSubject = (token) => {
    try {
      const p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const sub = JSON.parse(atob(p)).sub;
      return typeof sub === 'string' ? sub : '';
    } catch (e) {
      return '';
    }
  };
  const verifiedUser = () =>
    identity.identityToken ? tokenSubject(identity.identityToken) : identity.userId && identity.userHash ? identity.userId : '';
  const verified = () => Boolean(identity.identityToken || (identity.userId && identity.userHash));
  const convKey = () =>
    'parley:' + WORKSPACE + ':conversation:' + (verified() ? 'u:' + verifiedUser() : 'anon');

  // ---------------------------------------------------------------- state

  const S = {
    conn: null, // openConnection()
    welcomed: false,
    participant: null,
    heartbeatMs: 10000,
    hbTimer: 0,
    reconnectTimer: 0,
    attempt: 0,
    lastRecv: 0,
    fatal: false,
    helloHadVisitor: false,

    conversation: storage.get('localStorage', convKey()),
    subscribed: false, // resumed or started on this connection
    starting: false,
    wantStart: false,
    listRef: null,

    messages: new Map(), // id -> message entry
    maxSeq: 0, // highest deliver seq seen in this page, on node S.node
    node: '', // the node of the last welcome: seqs are its own
    vector: new Map(), // origin -> highest oseq received (deliver.at): resume's since on any node
    localSeq: 0,
    outbox: new Map(), // message id -> {frame, sentAt}: sent but not acked
    refs: new Map(), // ref -> {kind, ...}
    refN: 0,

    agentsOnline: new Map(), // participant -> name, of the agents online and not away
    agentsAway: new Set(), // agents online but away
    agentRead: 0, // highest read seq of any agent
    myRead: 0, // highest read seq of this visitor the server confirmed
    readSent: 0,
    typers: new Map(), // participant -> {name, timer}
    typingSent: false,
    typingSentAt: 0,
    typingIdle: 0,

    closeExplained: false,

    open: false,
    renderPending: false,
    forceScroll: false,
  };

  // ---------------------------------------------------------------- words

  // LOCALES holds every string the widget shows, per language: English,
  // German, French, Spanish and Arabic (right to left). The page chooses
  // with data-locale on the script tag, else the browser's languages pick
  // the first one here, else English. One key a line (web/locales_test.go
  // checks that every language has every key); {name}-style fields are
  // filled in by t().
  const LOCALES = {
    en: {
      title: 'Chat with us',
      greeting: 'Hi there! Ask us anything, we usually reply within a few minutes.',
      openChat: 'Open chat',
      openChatUnread: 'Open chat, {n} unread',
      closeChat: 'Close chat',
      message: 'Message',
      placeholder: 'Write a message…',
      send: 'Send message',
      seen: 'Seen',
      forget: 'Delete my data',
      forgetConfirm: 'Click again to delete your chats',
      poweredBy: 'Powered by Parley',
      support: 'Support',
      bot: '{name} · Bot',
      visitor: 'Visitor',
      someone: 'Someone',
      deleted: 'This message was deleted',
      typing: '{name} is typing…',
      oneOnline: '{name} is online',
      weOnline: 'We are online',
      offline: 'We will reply as soon as we can',
      away: 'We are away for a moment: write, and we will reply when we are back',
      errChat: 'Something went wrong in the chat.',
      youOffline: 'You are offline. Reconnecting…',
      lost: 'Connection lost. Reconnecting…',
      notConnected: 'Not connected: try again in a moment.',
      forgetSent: 'Your request was sent: an agent will delete your chats.',
      forgotten: 'Your chats were deleted.',
      notVerified: 'We could not verify your identity.',
      unavailable: 'Chat is not available right now.',
      update: 'This chat needs an update. Please reload the page.',
      forgetFailed: 'Your request could not be sent: {why}',
      startFailed: 'Could not start the chat: {why}',
      slowDown: 'Slow down a little…',
      wrong: 'Something went wrong.',
      tooLongMax: 'Messages can be at most {max} characters.',
      tooLong: 'This message is too long.',
      sending: 'Sending…',
      notSent: 'Not sent',
      edited: 'edited',
      emailAsk: 'Nobody is here right now. Leave your e-mail and we will write to you there:',
      emailPlaceholder: 'you@example.com',
      emailSave: 'Save e-mail',
      emailInvalid: 'Please enter a valid e-mail address, such as name@example.com.',
      emailNote: 'Replies will also be e-mailed to {email}',
      transcript: 'E-mail me the transcript',
      transcriptAsk: 'Please e-mail me the transcript of this conversation.',
      transcriptWait: 'A transcript was just requested: try again in a few minutes.',
    },
    de: {
      title: 'Schreiben Sie uns',
      greeting: 'Hallo! Fragen Sie uns alles, wir antworten meist innerhalb weniger Minuten.',
      openChat: 'Chat öffnen',
      openChatUnread: 'Chat öffnen, {n} ungelesen',
      closeChat: 'Chat schließen',
      message: 'Nachricht',
      placeholder: 'Nachricht schreiben…',
      send: 'Nachricht senden',
      seen: 'Gelesen',
      forget: 'Meine Daten löschen',
      forgetConfirm: 'Nochmals klicken, um Ihre Chats zu löschen',
      poweredBy: 'Bereitgestellt von Parley',
      support: 'Support',
      bot: '{name} · Bot',
      visitor: 'Besucher',
      someone: 'Jemand',
      deleted: 'Diese Nachricht wurde gelöscht',
      typing: '{name} schreibt…',
      oneOnline: '{name} ist online',
      weOnline: 'Wir sind online',
      offline: 'Wir antworten so bald wie möglich',
      away: 'Wir sind kurz nicht da: Schreiben Sie uns, wir antworten, sobald wir zurück sind',
      errChat: 'Im Chat ist ein Fehler aufgetreten.',
      youOffline: 'Sie sind offline. Neue Verbindung wird aufgebaut…',
      lost: 'Verbindung verloren. Neue Verbindung wird aufgebaut…',
      notConnected: 'Nicht verbunden: Bitte versuchen Sie es gleich noch einmal.',
      forgetSent: 'Ihre Anfrage wurde gesendet: Ein Mitarbeiter wird Ihre Chats löschen.',
      forgotten: 'Ihre Chats wurden gelöscht.',
      notVerified: 'Wir konnten Ihre Identität nicht bestätigen.',
      unavailable: 'Der Chat ist gerade nicht verfügbar.',
      update: 'Dieser Chat braucht ein Update. Bitte laden Sie die Seite neu.',
      forgetFailed: 'Ihre Anfrage konnte nicht gesendet werden: {why}',
      startFailed: 'Der Chat konnte nicht gestartet werden: {why}',
      slowDown: 'Bitte etwas langsamer…',
      wrong: 'Etwas ist schiefgelaufen.',
      tooLongMax: 'Nachrichten haben höchstens {max} Zeichen.',
      tooLong: 'Diese Nachricht ist zu lang.',
      sending: 'Wird gesendet…',
      notSent: 'Nicht gesendet',
      edited: 'bearbeitet',
      emailAsk: 'Gerade ist niemand da. Hinterlassen Sie Ihre E-Mail-Adresse, wir schreiben Ihnen dorthin:',
      emailPlaceholder: 'sie@beispiel.de',
      emailSave: 'E-Mail speichern',
      emailInvalid: 'Bitte geben Sie eine gültige E-Mail-Adresse ein, etwa name@beispiel.de.',
      emailNote: 'Antworten werden auch an {email} gesendet',
      transcript: 'Verlauf per E-Mail senden',
      transcriptAsk: 'Bitte senden Sie mir den Verlauf dieses Gesprächs per E-Mail.',
      transcriptWait: 'Der Verlauf wurde gerade angefordert: Versuchen Sie es in ein paar Minuten erneut.',
    },
    fr: {
      title: 'Discutons',
      greeting: 'Bonjour ! Posez-nous vos questions, nous répondons en général en quelques minutes.',
      openChat: 'Ouvrir le chat',
      openChatUnread: 'Ouvrir le chat, {n} non lus',
      closeChat: 'Fermer le chat',
      message: 'Message',
      placeholder: 'Écrivez un message…',
      send: 'Envoyer le message',
      seen: 'Vu',
      forget: 'Supprimer mes données',
      forgetConfirm: 'Cliquez à nouveau pour supprimer vos conversations',
      poweredBy: 'Propulsé par Parley',
      support: 'Support',
      bot: '{name} · Bot',
      visitor: 'Visiteur',
      someone: 'Quelqu’un',
      deleted: 'Ce message a été supprimé',
      typing: '{name} écrit…',
      oneOnline: '{name} est en ligne',
      weOnline: 'Nous sommes en ligne',
      offline: 'Nous vous répondrons dès que possible',
      away: 'Nous sommes absents un instant : écrivez-nous, nous répondrons à notre retour',
      errChat: 'Une erreur est survenue dans le chat.',
      youOffline: 'Vous êtes hors ligne. Reconnexion…',
      lost: 'Connexion perdue. Reconnexion…',
      notConnected: 'Non connecté : réessayez dans un instant.',
      forgetSent: 'Votre demande a été envoyée : un agent supprimera vos conversations.',
      forgotten: 'Vos conversations ont été supprimées.',
      notVerified: 'Nous n’avons pas pu vérifier votre identité.',
      unavailable: 'Le chat n’est pas disponible pour le moment.',
      update: 'Ce chat doit être mis à jour. Veuillez recharger la page.',
      forgetFailed: 'Votre demande n’a pas pu être envoyée : {why}',
      startFailed: 'Impossible de démarrer le chat : {why}',
      slowDown: 'Doucement…',
      wrong: 'Une erreur est survenue.',
      tooLongMax: 'Un message compte au plus {max} caractères.',
      tooLong: 'Ce message est trop long.',
      sending: 'Envoi…',
      notSent: 'Non envoyé',
      edited: 'modifié',
      emailAsk: 'Personne n\u2019est là pour le moment. Laissez votre e-mail, nous vous écrirons :',
      emailPlaceholder: 'vous@exemple.fr',
      emailSave: 'Enregistrer l\u2019e-mail',
      emailInvalid: 'Saisissez une adresse e-mail valide, par exemple nom@exemple.fr.',
      emailNote: 'Les réponses seront aussi envoyées à {email}',
      transcript: 'M\u2019envoyer la transcription',
      transcriptAsk: 'Merci de m\u2019envoyer la transcription de cette conversation par e-mail.',
      transcriptWait: 'Une transcription vient d\u2019être demandée : réessayez dans quelques minutes.',
    },
    es: {
      title: 'Chatea con nosotros',
      greeting: '¡Hola! Pregúntanos lo que quieras, solemos responder en pocos minutos.',
      openChat: 'Abrir el chat',
      openChatUnread: 'Abrir el chat, {n} sin leer',
      closeChat: 'Cerrar el chat',
      message: 'Mensaje',
      placeholder: 'Escribe un mensaje…',
      send: 'Enviar mensaje',
      seen: 'Visto',
      forget: 'Borrar mis datos',
      forgetConfirm: 'Haz clic otra vez para borrar tus chats',
      poweredBy: 'Con la tecnología de Parley',
      support: 'Soporte',
      bot: '{name} · Bot',
      visitor: 'Visitante',
      someone: 'Alguien',
      deleted: 'Este mensaje se eliminó',
      typing: '{name} está escribiendo…',
      oneOnline: '{name} está en línea',
      weOnline: 'Estamos en línea',
      offline: 'Te responderemos lo antes posible',
      away: 'Estamos ausentes un momento: escríbenos y te responderemos al volver',
      errChat: 'Algo falló en el chat.',
      youOffline: 'Estás sin conexión. Reconectando…',
      lost: 'Se perdió la conexión. Reconectando…',
      notConnected: 'Sin conexión: inténtalo de nuevo en un momento.',
      forgetSent: 'Tu solicitud se envió: un agente borrará tus chats.',
      forgotten: 'Tus chats se borraron.',
      notVerified: 'No pudimos verificar tu identidad.',
      unavailable: 'El chat no está disponible ahora.',
      update: 'Este chat necesita una actualización. Vuelve a cargar la página.',
      forgetFailed: 'No se pudo enviar tu solicitud: {why}',
      startFailed: 'No se pudo iniciar el chat: {why}',
      slowDown: 'Más despacio…',
      wrong: 'Algo salió mal.',
      tooLongMax: 'Los mensajes tienen como máximo {max} caracteres.',
      tooLong: 'Este mensaje es demasiado largo.',
      sending: 'Enviando…',
      notSent: 'No enviado',
      edited: 'editado',
      emailAsk: 'Ahora no hay nadie. Déjanos tu correo y te escribiremos allí:',
      emailPlaceholder: 'tu@ejemplo.com',
      emailSave: 'Guardar correo',
      emailInvalid: 'Introduce un correo válido, como nombre@ejemplo.com.',
      emailNote: 'Las respuestas también se enviarán a {email}',
      transcript: 'Enviarme la transcripción',
      transcriptAsk: 'Envíame por correo la transcripción de esta conversación.',
      transcriptWait: 'Acabas de pedir una transcripción: inténtalo de nuevo en unos minutos.',
    },
    ar: {
      title: 'تحدّث معنا',
      greeting: 'مرحبًا! اسألنا عن أي شيء، نردّ عادةً خلال دقائق.',
      openChat: 'افتح المحادثة',
      openChatUnread: 'افتح المحادثة، {n} غير مقروءة',
      closeChat: 'أغلق المحادثة',
      message: 'رسالة',
      placeholder: 'اكتب رسالة…',
      send: 'أرسل الرسالة',
      seen: 'تمت القراءة',
      forget: 'احذف بياناتي',
      forgetConfirm: 'انقر مرة أخرى لحذف محادثاتك',
      poweredBy: 'بدعم من Parley',
      support: 'الدعم',
      bot: '{name} · روبوت',
      visitor: 'زائر',
      someone: 'شخص ما',
      deleted: 'حُذفت هذه الرسالة',
      typing: '{name} يكتب…',
      oneOnline: '{name} متصل الآن',
      weOnline: 'نحن متصلون الآن',
      offline: 'سنردّ في أقرب وقت ممكن',
      away: 'نحن غائبون لحظة: اكتب لنا وسنردّ عند عودتنا',
      errChat: 'حدث خطأ في المحادثة.',
      youOffline: 'أنت غير متصل. جارٍ إعادة الاتصال…',
      lost: 'انقطع الاتصال. جارٍ إعادة الاتصال…',
      notConnected: 'غير متصل: حاول مرة أخرى بعد لحظة.',
      forgetSent: 'أُرسل طلبك: سيحذف أحد الموظفين محادثاتك.',
      forgotten: 'حُذفت محادثاتك.',
      notVerified: 'تعذّر التحقق من هويتك.',
      unavailable: 'المحادثة غير متاحة الآن.',
      update: 'تحتاج هذه المحادثة إلى تحديث. يُرجى إعادة تحميل الصفحة.',
      forgetFailed: 'تعذّر إرسال طلبك: {why}',
      startFailed: 'تعذّر بدء المحادثة: {why}',
      slowDown: 'على مهلك قليلًا…',
      wrong: 'حدث خطأ ما.',
      tooLongMax: 'لا تتجاوز الرسالة {max} حرف.',
      tooLong: 'هذه الرسالة طويلة جدًا.',
      sending: 'جارٍ الإرسال…',
      notSent: 'لم تُرسل',
      edited: 'معدّلة',
      emailAsk: 'لا يوجد أحد الآن. اترك بريدك الإلكتروني وسنراسلك عليه:',
      emailPlaceholder: 'you@example.com',
      emailSave: 'حفظ البريد الإلكتروني',
      emailInvalid: 'أدخل بريدًا إلكترونيًا صالحًا مثل name@example.com.',
      emailNote: 'ستُرسل الردود أيضًا إلى {email}',
      transcript: 'أرسل لي نص المحادثة',
      transcriptAsk: 'أرجو أن ترسلوا لي نص هذه المحادثة بالبريد الإلكتروني.',
      transcriptWait: 'طُلب نص المحادثة للتو: حاول مرة أخرى بعد بضع دقائق.',
    },
  };
  const RTL = new Set(['ar']);

  // chooseLocale: data-locale ("de", "de-AT"), else the browser's
  // preferences in order, else English.
  function chooseLocale(asked) {
    const wants = [asked].concat(Array.from(navigator.languages || [navigator.language || '']));
    for (const w of wants) {
      const base = String(w || '').toLowerCase().split(/[-_]/)[0];
      if (Object.prototype.hasOwnProperty.call(LOCALES, base)) return base;
    }
    return 'en';
  }
  const LOCALE = chooseLocale(script.dataset.locale);
  const WORDS = LOCALES[LOCALE];

  // t is the string key in the page's language ({field}s from args).
  function t(key, args) {
    const s = WORDS[key] || LOCALES.en[key] || key;
    return args ? s.replace(/\{(\w+)\}/g, (all, k) => (k in args ? String(args[k]) : all)) : s;
  }

  // ---------------------------------------------------------------- DOM

  const ICON_CHAT = 'M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2zM6 9h12v2H6V9zm8 5H6v-2h8v2zm4-6H6V6h12v2z';
  const ICON_CLOSE = 'M19 6.41 17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 17.59 13.41 12z';
  const ICON_SEND = 'M2.01 21 23 12 2.01 3 2 10l15 2-15 2z';
  const ICON_DOWN = 'M7.41 8.59 12 13.17l4.59-4.58L18 10l-6 6-6-6z';

  const title = script.dataset.title || t('title');
  const greeting = script.dataset.greeting || t('greeting');

  // The panel is laid out in the language's direction (right to left for
  // Arabic) whatever the host page's.
  const root = h('div', { class: 'parley-root', id: 'parley-root', lang: LOCALE, dir: RTL.has(LOCALE) ? 'rtl' : 'ltr' });
  root.hidden = true; // shown once widget.css has loaded

  const badge = h('span', { class: 'parley-badge', 'aria-hidden': 'true' });
  badge.hidden = true;
  const launcher = h('button', {
    type: 'button', class: 'parley-launcher', 'data-testid': 'parley-launcher',
    'aria-label': t('openChat'), 'aria-expanded': 'false', 'aria-controls': 'parley-panel',
  }, h('span', { class: 'parley-icon parley-icon-open' }, icon(ICON_CHAT)),
  h('span', { class: 'parley-icon parley-icon-close' }, icon(ICON_DOWN)), badge);

  const presenceText = h('span', { class: 'parley-presence-text' });
  const presence = h('div', {
    class: 'parley-presence', 'data-testid': 'parley-agent-online', 'data-online': 'false',
  }, h('span', { class: 'parley-dot', 'aria-hidden': 'true' }), presenceText);
  const closeBtn = h('button', {
    type: 'button', class: 'parley-close', 'aria-label': t('closeChat'),
  }, icon(ICON_CLOSE));

  const messagesEl = h('div', { class: 'parley-messages', role: 'log', 'aria-live': 'polite' });
  const bodyEl = h('div', { class: 'parley-body' },
    h('div', { class: 'parley-intro', text: greeting }), messagesEl);
  const typingEl = h('div', { class: 'parley-typing', 'data-testid': 'parley-typing', 'aria-live': 'polite' });
  typingEl.hidden = true;
  const statusEl = h('div', { class: 'parley-status', 'data-testid': 'parley-status', role: 'status' });
  statusEl.hidden = true;
  const input = h('textarea', {
    class: 'parley-input', 'data-testid': 'parley-input', rows: '1', maxlength: String(MAX_BODY),
    placeholder: t('placeholder'), 'aria-label': t('message'), autocomplete: 'off',
  });
  const sendBtn = h('button', {
    type: 'button', class: 'parley-send', 'data-testid': 'parley-send', 'aria-label': t('send'),
  }, icon(ICON_SEND));
  const seenEl = h('span', { class: 'parley-seen', 'data-testid': 'parley-seen', text: t('seen') });
  seenEl.hidden = true;

  // With no agent online (or all away) the widget asks for an e-mail
  // address, optional: sent as a message whose id starts with email-
  // (docs/protocol.md, E-mail), the replies the visitor does not see are
  // mailed there. The transcript button asks for the conversation by mail.
  const emailInput = h('input', {
    type: 'email', class: 'parley-email-input', 'data-testid': 'parley-email-input', maxlength: '254',
    placeholder: t('emailPlaceholder'), 'aria-label': t('emailAsk'), autocomplete: 'email',
  });
  const emailSave = h('button', { type: 'submit', class: 'parley-email-save', 'data-testid': 'parley-email-save', text: t('emailSave') });
  const emailForm = h('form', { class: 'parley-email', 'data-testid': 'parley-email-form', novalidate: '' },
    h('div', { class: 'parley-email-ask', text: t('emailAsk') }), h('div', { class: 'parley-email-row' }, emailInput, emailSave));
  emailForm.hidden = true;
  const transcriptBtn = h('button', {
    type: 'button', class: 'parley-forget', 'data-testid': 'parley-transcript', text: t('transcript'),
  });
  transcriptBtn.hidden = true;

  // Asking to be forgotten takes two clicks: the first asks to confirm.
  const forgetBtn = h('button', {
    type: 'button', class: 'parley-forget', 'data-testid': 'parley-forget', text: t('forget'),
  });

  const panel = h('section', {
    class: 'parley-panel', id: 'parley-panel', 'data-testid': 'parley-panel',
    role: 'dialog', 'aria-label': title,
  },
  h('header', { class: 'parley-header' },
    h('div', { class: 'parley-header-text' }, h('div', { class: 'parley-title', text: title }), presence),
    closeBtn),
  bodyEl, typingEl, statusEl, emailForm,
  h('div', { class: 'parley-composer' }, input, sendBtn),
  h('div', { class: 'parley-footer' }, t('poweredBy'), ' · ', forgetBtn, transcriptBtn));
  panel.hidden = true;

  root.append(panel, launcher);

  const accent = script.dataset.color;
  if (accent && window.CSS && CSS.supports('color', accent)) {
    root.style.setProperty('--parley-accent', accent); // CSSOM, allowed under CSP
  }

  const css = h('link', { rel: 'stylesheet', href: ORIGIN + '/static/widget.css' });
  // The launcher shows once its styles are in; the mark lets a page (and
  // the tests) time it with the page's other performance entries.
  const reveal = () => {
    if (!root.hidden) return;
    root.hidden = false;
    if (window.performance && performance.mark) performance.mark('parley:launcher-shown');
  };
  css.addEventListener('load', reveal);
  css.addEventListener('error', reveal);
  document.head.append(css);

  function mount() {
    document.body.append(root);
    // A mail's link back (#parley-open=<conversation>) opens the chat.
    if (storage.get('sessionStorage', KEY_OPEN) === '1' || /(^#|&)parley-open=/.test(location.hash)) setOpen(true);
    else if (S.conversation) connect(); // a returning visitor: show replies on the launcher
    renderPresence();
  }

  // ---------------------------------------------------------------- rendering

  function isMine(m) {
    if (m.author) return m.author === S.participant;
    return Boolean(m.localOnly);
  }

  function formatTime(ts) {
    if (!ts || !ts.w) return '';
    try {
      return new Date(ts.w).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    } catch (e) { return ''; }
  }

  function renderMessage(m) {
    if (!m.el) {
      m.elAuthor = h('div', { class: 'parley-msg-author', dir: 'auto' });
      m.elBody = h('div', { class: 'parley-bubble', 'data-testid': 'parley-message-body', dir: 'auto' });
      m.elTime = h('span', { class: 'parley-msg-time' });
      m.elState = h('span', { class: 'parley-msg-state' });
      m.el = h('div', { class: 'parley-msg', 'data-testid': 'parley-message', 'data-id': m.id },
        m.elAuthor, m.elBody, h('div', { class: 'parley-msg-meta' }, m.elTime, m.elState));
    }
    const mine = isMine(m);
    m.el.classList.toggle('parley-msg--mine', mine);
    m.el.classList.toggle('parley-msg--deleted', Boolean(m.deleted));
    m.el.dataset.state = C.stateName(m);
    m.el.dataset.authorRole = m.role || 'visitor';
    m.elAuthor.hidden = mine;
    // A bot (a program posting through the conversations API) is named
    // as it chose, and said to be a bot.
    if (m.role === 'bot') m.elAuthor.textContent = t('bot', { name: m.name || t('support') });
    else m.elAuthor.textContent = m.name || (m.role === 'agent' ? t('support') : t('visitor'));
    const shown = m.deleted ? null : m.body; // rebuilt only when it changes (links keep focus)
    if (m.elShown !== shown) {
      m.elShown = shown;
      if (m.deleted) m.elBody.textContent = t('deleted');
      else if (isEmailMessage(m)) m.elBody.textContent = t('emailNote', { email: m.body });
      else C.linkify(m.elBody, m.body);
    }
    m.elTime.textContent = formatTime(m.ts);
    m.elState.textContent = C.stateText(m, { sending: t('sending'), notSent: t('notSent'), edited: t('edited') });
  }

  function render() {
    S.renderPending = false;
    const atBottom = bodyEl.scrollHeight - bodyEl.scrollTop - bodyEl.clientHeight < 48;
    const list = Array.from(S.messages.values()).sort(C.tsCompare);
    let lastMine = null;
    list.forEach((m, i) => {
      renderMessage(m);
      const prev = list[i - 1];
      if (prev && prev.author === m.author && !isMine(m)) m.elAuthor.hidden = true;
      if (messagesEl.children[i] !== m.el) messagesEl.insertBefore(m.el, messagesEl.children[i] || null);
      if (isMine(m)) lastMine = m;
    });
    while (messagesEl.children.length > list.length) messagesEl.lastElementChild.remove();

    if (lastMine && lastMine.seq && S.agentRead >= lastMine.seq) {
      if (seenEl.parentNode !== lastMine.el) lastMine.el.append(seenEl);
      seenEl.hidden = false;
    } else {
      seenEl.hidden = true;
    }
    if (atBottom || S.forceScroll) bodyEl.scrollTop = bodyEl.scrollHeight;
    S.forceScroll = false;
    renderTyping();
    renderBadge();
    renderEmail();
  }

  function scheduleRender() {
    if (S.renderPending) return;
    S.renderPending = true;
    setTimeout(render, 0);
  }

  function renderTyping() {
    const first = S.typers.values().next().value;
    typingEl.hidden = !first;
    typingEl.textContent = first ? t('typing', { name: first.name || t('support') }) : '';
  }

  function renderPresence() {
    const names = Array.from(S.agentsOnline.values()).filter(Boolean);
    const online = S.agentsOnline.size > 0;
    const away = !online && S.agentsAway.size > 0;
    presence.dataset.online = String(online);
    presence.dataset.away = String(away);
    presenceText.textContent = online
      ? (names.length === 1 ? t('oneOnline', { name: names[0] }) : t('weOnline'))
      : away ? t('away') : t('offline');
    renderEmail();
  }

  // ---------------------------------------------------------------- e-mail

  const EMAIL_RE = /^[^\s@<>()[\],;:"]+@[^\s@<>()[\],;:"]+\.[^\s@<>()[\],;:"]+$/;

  function isEmailMessage(m) {
    return typeof m.id === 'string' && m.id.startsWith('email-') && isMine(m);
  }

  // myEmail is the latest address this visitor left in the conversation.
  function myEmail() {
    let best = null;
    for (const m of S.messages.values()) {
      if (isEmailMessage(m) && !m.deleted && m.state !== 'failed' && (!best || C.tsCompare(best, m) < 0)) best = m;
    }
    return best ? best.body : '';
  }

  // The form shows while no agent is online and no address was left;
  // the transcript button once one was.
  function renderEmail() {
    const known = Boolean(myEmail());
    emailForm.hidden = known || S.agentsOnline.size > 0 || !S.welcomed;
    transcriptBtn.hidden = !known;
  }

  function sendSpecial(id, body) {
    S.messages.set(id, C.pending(id, S.participant, 'visitor', identity.name, body, ++S.localSeq));
    S.outbox.set(id, { frame: { type: 'send', id, body }, sentAt: 0 });
    S.forceScroll = true;
    render();
    renderEmail();
    if (S.conversation) flushOutbox();
    else ensureConversation();
  }

  emailForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const addr = emailInput.value.trim();
    if (addr.length > 254 || !EMAIL_RE.test(addr)) {
      emailInput.setAttribute('aria-invalid', 'true');
      setStatus(t('emailInvalid'), 'warn', 6000);
      return;
    }
    emailInput.removeAttribute('aria-invalid');
    emailInput.value = '';
    sendSpecial('email-' + newId(), addr);
  });

  // One transcript every 10 minutes (the server answers no more often).
  const TRANSCRIPT_EVERY_MS = 10 * 60 * 1000;
  transcriptBtn.addEventListener('click', () => {
    const last = Number(storage.get('localStorage', KEY_TRANSCRIPT) || 0);
    if (Date.now() - last < TRANSCRIPT_EVERY_MS) {
      setStatus(t('transcriptWait'), 'warn', 6000);
      return;
    }
    storage.set('localStorage', KEY_TRANSCRIPT, String(Date.now()));
    sendSpecial('transcript-' + newId(), t('transcriptAsk'));
  });

  function unreadCount() {
    const read = Math.max(S.myRead, S.readSent);
    let n = 0;
    for (const m of S.messages.values()) if (!isMine(m) && !m.deleted && m.seq > read) n++;
    return n;
  }

  function renderBadge() {
    const n = S.open ? 0 : unreadCount();
    badge.hidden = n === 0;
    badge.textContent = n > 9 ? '9+' : String(n);
    launcher.setAttribute('aria-label', n ? t('openChatUnread', { n }) : S.open ? t('closeChat') : t('openChat'));
  }

  let statusTimer = 0;
  function setStatus(text, kind, ttl) {
    clearTimeout(statusTimer);
    statusEl.textContent = text || '';
    statusEl.dataset.kind = kind || 'info';
    statusEl.hidden = !text;
    if (text && ttl) statusTimer = setTimeout(() => setStatus(''), ttl);
  }

  function setOpen(open) {
    S.open = open;
    panel.hidden = !open;
    root.classList.toggle('parley-root--open', open);
    launcher.setAttribute('aria-expanded', String(open));
    if (open) storage.set('sessionStorage', KEY_OPEN, '1');
    else storage.del('sessionStorage', KEY_OPEN);
    if (open) {
      connect();
      S.forceScroll = true;
      render();
      autosize();
      if (!window.matchMedia || !window.matchMedia('(max-width: 480px)').matches) input.focus();
      maybeSendRead();
    } else {
      stopTyping();
      renderBadge();
    }
  }

  function autosize() {
    C.autosize(input, 120);
  }

  // ---------------------------------------------------------------- connection

  // One connection to the node, over WebTransport or WebSocket (client.js).
  const openConnection = C.transport(ORIGIN, WS_URL).open;

  function connect() {
    if (S.conn || S.fatal) return;
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = 0;
    S.welcomed = false;
    S.subscribed = false;
    S.closeExplained = false; // set by an error frame that closes the connection
    const conn = openConnection({
      open() {
        if (S.conn !== conn) return;
        panel.dataset.transport = conn.transport;
        sendHello();
      },
      line(text) {
        if (S.conn !== conn) return;
        S.lastRecv = Date.now();
        const f = C.parseFrame(text);
        if (!f) return;
        try {
          onFrame(f);
        } catch (err) {
          setStatus(t('errChat'), 'error', 6000);
          console.warn('Parley:', err);
        }
      },
      close(code) {
        if (S.conn !== conn) return;
        // The error frame normally says why; the close code is the fallback.
        if (!S.closeExplained) {
          if (code === 4403) onError({ type: 'error', code: 'auth_failed' });
          else if (code === 4400) onError({ type: 'error', code: 'version_unsupported' });
        }
        onClosed();
      },
    });
    S.conn = conn;
  }

  function sendHello() {
    const hello = { type: 'hello', v: PROTOCOL_VERSION, workspace: WORKSPACE, role: 'visitor' };
    S.helloHadVisitor = false;
    if (identity.identityToken) {
      // A verified identity replaces the anonymous one, so it travels alone.
      hello.identity_token = identity.identityToken;
    } else if (verified()) {
      hello.user_id = identity.userId;
      hello.user_hash = identity.userHash;
    } else {
      const saved = savedVisitor();
      if (saved) {
        hello.visitor_id = saved.visitor_id;
        hello.visitor_sig = saved.visitor_sig;
        S.helloHadVisitor = true;
      }
    }
    if (identity.name) hello.name = identity.name.slice(0, 80);
    request(hello, { kind: 'hello' });
  }

  function savedVisitor() {
    try {
      const saved = JSON.parse(storage.get('localStorage', KEY_VISITOR) || 'null');
      if (saved && typeof saved.visitor_id === 'string' && typeof saved.visitor_sig === 'string') return saved;
    } catch (e) { /* a damaged entry: start as a new visitor */ }
    return null;
  }

  // Closes the connection (if any) and forgets everything tied to it.
  function teardown() {
    const conn = S.conn;
    S.conn = null;
    if (conn) conn.close();
    delete panel.dataset.transport;
    clearInterval(S.hbTimer);
    S.hbTimer = 0;
    S.welcomed = false;
    S.subscribed = false;
    S.starting = false;
    S.listRef = null;
    S.refs.clear();
    S.readSent = 0;
    S.typingSent = false;
    for (const e of S.outbox.values()) e.sentAt = 0; // resend everything unacked
    for (const t of S.typers.values()) clearTimeout(t.timer);
    S.typers.clear();
    renderTyping();
  }

  function onClosed() {
    teardown();
    if (!S.fatal) scheduleReconnect();
  }

  function scheduleReconnect() {
    if (S.reconnectTimer || S.fatal) return;
    const delay = C.backoff(S.attempt);
    S.attempt++;
    if (S.attempt > 1 || navigator.onLine === false) {
      setStatus(navigator.onLine === false ? t('youOffline') : t('lost'), 'warn');
    }
    S.reconnectTimer = setTimeout(() => {
      S.reconnectTimer = 0;
      connect();
    }, delay);
  }

  window.addEventListener('online', () => {
    if (!S.conn && !S.fatal && (S.open || S.conversation)) {
      S.attempt = 0;
      connect();
    }
  });

  function sendRaw(frame) {
    return C.sendRaw(S, frame);
  }

  // Sends a frame with a fresh ref and remembers what it was for.
  function request(frame, ctx) {
    return C.request(S, frame, ctx);
  }

  function heartbeat() {
    if (!S.conn) return;
    if (!C.beat(S)) {
      onClosed(); // the connection is dead without a close frame
      return;
    }
    flushOutbox(); // resends what timed out
  }

  // ---------------------------------------------------------------- frames

  function onFrame(f) {
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'started': onStarted(f); break;
      case 'resumed': onResumed(f); break;
      case 'conversations': onConversations(f); break;
      case 'deliver': onDeliver(f); break;
      case 'ack': onAck(f); break;
      case 'read': onRead(f); break;
      case 'typing': onTyping(f); break;
      case 'presence': onPresence(f); break;
      case 'forgotten': onForgotten(f); break;
      case 'error': onError(f); break;
      default: break; // pong and frames of later versions
    }
  }

  function onWelcome(f) {
    S.welcomed = true;
    S.attempt = 0;
    const prev = S.participant;
    S.participant = f.participant || null;
    if (f.visitor_id && f.visitor_sig) {
      storage.set('localStorage', KEY_VISITOR,
        JSON.stringify({ visitor_id: f.visitor_id, visitor_sig: f.visitor_sig }));
    }
    S.heartbeatMs = C.heartbeatMs(f);
    clearInterval(S.hbTimer);
    S.hbTimer = setInterval(heartbeat, S.heartbeatMs);
    S.agentsOnline.clear(); // the current presence follows
    S.agentsAway.clear();
    renderPresence();
    setStatus('');
    rebase(typeof f.node === 'string' ? f.node : '');
    if (S.conversation) resume();
    else if (S.wantStart || S.outbox.size) startConversation();
    listConversations();
    if (prev !== S.participant) scheduleRender();
  }

  function listConversations() {
    S.listRef = request({ type: 'list' }, { kind: 'list' });
  }

  function resume() {
    S.subscribed = false;
    const frame = C.resumeFrom({ type: 'resume', conversation: S.conversation }, S.vector, S.maxSeq);
    request(frame, { kind: 'resume', conversation: S.conversation });
  }

  // rebase forgets the seqs of another node when a connection lands on a new
  // one: the vector carries the resume; the messages kept get this node's
  // positions from the next list (see onConversations).
  function rebase(node) {
    const moved = Boolean(S.node) && node !== S.node;
    S.node = node;
    if (!moved) return;
    S.maxSeq = 0;
    S.agentRead = 0;
    S.myRead = 0;
    S.readSent = 0;
    C.forgetSeqs(S.messages);
  }

  function onResumed(f) {
    if (f.conversation !== S.conversation) return;
    if (typeof f.head === 'number' && f.head > S.maxSeq) S.maxSeq = f.head;
    if (f.more) {
      resume(); // the replay was cut short: continue after what arrived
      return;
    }
    S.subscribed = true;
    flushOutbox();
    sendContext();
    if (S.open && document.activeElement === input && input.value.trim()) onInput();
    maybeSendRead();
    scheduleRender();
  }

  function ensureConversation() {
    S.wantStart = true;
    if (!S.conn) connect();
    else if (S.welcomed && !S.conversation) startConversation();
  }

  function startConversation() {
    if (S.starting || S.conversation || !S.welcomed) return;
    S.starting = Boolean(request({ type: 'start' }, { kind: 'start' }));
  }

  function onStarted(f) {
    S.starting = false;
    S.wantStart = false;
    if (!f.conversation || (S.conversation && S.conversation !== f.conversation)) return;
    setConversation(f.conversation);
    S.subscribed = true;
    flushOutbox();
    sendContext();
    if (document.activeElement === input && input.value.trim()) onInput();
    scheduleRender();
  }

  // sendContext tells the conversation's agents the visitor's context, once
  // per page and conversation, and again when it changes.
  function sendContext() {
    if (!S.conversation || !S.subscribed) return;
    const x = contextNow();
    const key = S.conversation + ' ' + JSON.stringify(x);
    if (S.contextSent === key || !Object.keys(x).length) return;
    if (request({ type: 'context', conversation: S.conversation, id: newId(), context: x }, { kind: 'context' })) S.contextSent = key;
  }

  function setConversation(id) {
    if (S.conversation !== id) {
      S.maxSeq = 0;
      S.vector.clear();
      S.agentRead = 0;
      S.myRead = 0;
    }
    S.conversation = id;
    storage.set('localStorage', convKey(), id);
  }

  function forgetConversation() {
    S.conversation = null;
    S.subscribed = false;
    storage.del('localStorage', convKey());
    for (const id of Array.from(S.messages.keys())) {
      if (!S.outbox.has(id)) S.messages.delete(id); // keep what is still to be sent
    }
    S.maxSeq = 0;
    S.vector.clear();
    S.agentRead = 0;
    S.myRead = 0;
    for (const e of S.outbox.values()) e.sentAt = 0;
    scheduleRender();
  }

  function applyReads(reads) {
    if (!reads || typeof reads !== 'object') return;
    for (const [p, seq] of Object.entries(reads)) {
      if (typeof seq !== 'number') continue;
      if (p === S.participant) S.myRead = Math.max(S.myRead, seq);
      else if (p.startsWith('a:')) S.agentRead = Math.max(S.agentRead, seq);
    }
  }

  function onConversations(f) {
    if (f.ref !== S.listRef) return;
    S.listRef = null;
    const items = Array.isArray(f.items) ? f.items : [];
    if (S.conversation) {
      const mine = items.find((c) => c && c.id === S.conversation);
      if (mine) applyReads(mine.reads);
      if (mine && typeof mine.head === 'number' && mine.head > 0) {
        // Messages kept from another node: at most this node's head here.
        const stale = C.settleSeqs(S.messages, mine.head);
        if (stale && mine.head > S.maxSeq) S.maxSeq = mine.head;
      }
    } else if (!S.starting && items.length) {
      // A verified visitor on a new device: continue their latest conversation.
      const latest = items.reduce((a, b) => ((b.updated || 0) > (a.updated || 0) ? b : a));
      setConversation(latest.id);
      applyReads(latest.reads);
      resume();
    }
    scheduleRender();
  }

  function onDeliver(f) {
    if (!f.message || f.conversation !== S.conversation) return;
    if (typeof f.seq === 'number' && f.seq > S.maxSeq) S.maxSeq = f.seq;
    const msg = f.message;
    C.deliver(f, S.messages, S.vector, () => ++S.localSeq);
    if (msg.author === S.participant) {
      const pending = S.outbox.get(msg.id);
      if (pending && pending.frame.type === 'send') S.outbox.delete(msg.id); // durable already
    }
    const typer = S.typers.get(msg.author);
    if (typer) {
      clearTimeout(typer.timer);
      S.typers.delete(msg.author);
    }
    scheduleRender();
    maybeSendRead();
  }

  function onAck(f) {
    const ctx = C.takeRef(S, f);
    if (ctx && ctx.kind === 'read') {
      S.myRead = Math.max(S.myRead, ctx.seq);
      return;
    }
    if (!f.id) return;
    S.outbox.delete(f.id);
    const m = S.messages.get(f.id);
    if (!m) return;
    C.acked(m, f);
    scheduleRender();
  }

  function onRead(f) {
    if (f.conversation !== S.conversation || typeof f.seq !== 'number') return;
    if (f.participant === S.participant) S.myRead = Math.max(S.myRead, f.seq);
    else if (f.role === 'agent') S.agentRead = Math.max(S.agentRead, f.seq);
    scheduleRender();
  }

  function onTyping(f) {
    if (f.conversation !== S.conversation || !f.participant || f.participant === S.participant) return;
    const old = S.typers.get(f.participant);
    if (old) clearTimeout(old.timer);
    if (f.typing) {
      const ttl = Number(f.expires_ms) > 0 ? Number(f.expires_ms) : 5000;
      const entry = { name: f.name || (f.role === 'agent' ? t('support') : t('someone')) };
      entry.timer = setTimeout(() => {
        if (S.typers.get(f.participant) === entry) {
          S.typers.delete(f.participant);
          renderTyping();
        }
      }, ttl);
      S.typers.set(f.participant, entry);
    } else {
      S.typers.delete(f.participant);
    }
    renderTyping();
  }

  // A request to be forgotten: sent with the second click of the button;
  // answered by the erasure (the widget then forgets the conversation and
  // the anonymous identity) or by the wait for an agent's confirmation.
  function forget() {
    if (forgetBtn.dataset.armed !== 'true') {
      forgetBtn.dataset.armed = 'true';
      forgetBtn.textContent = t('forgetConfirm');
      return;
    }
    forgetBtn.dataset.armed = 'false';
    forgetBtn.textContent = t('forget');
    if (!S.welcomed) {
      setStatus(t('notConnected'), 'error', 6000);
      return;
    }
    request({ type: 'forget' }, { kind: 'forget' });
  }

  function onForgotten(f) {
    C.takeRef(S, f);
    if (!f.erased) {
      setStatus(t('forgetSent'), 'info');
      return;
    }
    S.outbox.clear();
    forgetConversation();
    S.messages.clear();
    if (!verified()) storage.del('localStorage', KEY_VISITOR);
    scheduleRender();
    setStatus(t('forgotten'), 'info');
  }

  function onPresence(f) {
    if (f.role !== 'agent' || !f.participant) return;
    S.agentsOnline.delete(f.participant);
    S.agentsAway.delete(f.participant);
    if (f.online && f.away) S.agentsAway.add(f.participant);
    else if (f.online) S.agentsOnline.set(f.participant, f.name || '');
    renderPresence();
  }

  function onError(f) {
    const ctx = C.takeRef(S, f);
    if (ctx && ctx.kind === 'context') {
      // Refused (a site's attribute out of bounds): the chat goes on without it.
      console.warn('Parley: the page context was refused: ' + (f.message || f.code));
      return;
    }
    switch (f.code) {
      case 'auth_failed':
        S.closeExplained = true;
        if (S.fatal) return;
        if (S.helloHadVisitor) {
          // The stored anonymous identity is no longer valid: start afresh.
          storage.del('localStorage', KEY_VISITOR);
          if (!verified()) forgetConversation();
          S.attempt = 0;
        } else {
          S.fatal = true;
          setStatus(verified() ? t('notVerified') : t('unavailable'), 'error');
        }
        return;
      case 'version_unsupported':
        S.closeExplained = true;
        S.fatal = true;
        setStatus(t('update'), 'error');
        return;
      case 'unavailable':
        if (ctx && ctx.kind === 'resume' && ctx.conversation === S.conversation) {
          // Not answered yet (this node could not ask the conversation's
          // replicas): ask again on this connection; a closing one is
          // resumed on the next.
          const conn = S.conn;
          setTimeout(() => {
            if (S.conn === conn && !S.subscribed && ctx.conversation === S.conversation) resume();
          }, C.retryMs(f) || 1000);
        }
        return; // else the server closes the connection; we reconnect and resume
      case 'slow_consumer':
        return; // the server closes the connection; we reconnect and resume
      default:
        break;
    }
    if (ctx) {
      switch (ctx.kind) {
        case 'hello':
          if (S.helloHadVisitor) {
            storage.del('localStorage', KEY_VISITOR); // malformed: start afresh
            if (!verified()) forgetConversation();
            onClosed();
          } else {
            S.fatal = true;
            teardown();
            setStatus(t('unavailable'), 'error');
            console.warn('Parley: hello refused:', f.code, f.message);
          }
          return;
        case 'list':
          S.listRef = null;
          return; // best effort only
        case 'read':
          return;
        case 'forget':
          setStatus(t('forgetFailed', { why: f.message || f.code }), 'error', 8000);
          return;
        case 'resume':
          if (f.code === 'not_found' && ctx.conversation === S.conversation) {
            forgetConversation();
            if (S.outbox.size) startConversation();
          }
          return;
        case 'start':
          S.starting = false;
          if (f.code === 'rate_limited' || f.code === 'overloaded') setTimeout(startConversation, C.retryMs(f) || 2000);
          else setStatus(t('startFailed', { why: f.message || f.code }), 'error', 8000);
          return;
        case 'send': {
          if (f.code === 'rate_limited' || f.code === 'overloaded' || f.code === 'internal') {
            // Resent after retry_ms when the error says it, else after the ack timeout.
            const ms = C.retryAfter(S.outbox.get(ctx.id), f);
            if (ms) setTimeout(flushOutbox, ms);
            return;
          }
          const m = S.messages.get(ctx.id);
          S.outbox.delete(ctx.id);
          if (f.code === 'bad_email') {
            // The server refused the address: ask again.
            S.messages.delete(ctx.id);
            setStatus(t('emailInvalid'), 'warn', 6000);
            scheduleRender();
            renderEmail();
            return;
          }
          if (m) {
            m.state = 'failed';
            m.error = f.code === 'bad_request' ? 'message not accepted' : f.code;
          }
          scheduleRender();
          return;
        }
        default:
          break;
      }
    }
    if (f.code === 'rate_limited') setStatus(t('slowDown'), 'warn', 4000);
    else setStatus(f.message || t('wrong'), 'error', 6000);
  }

  // ---------------------------------------------------------------- sending

  function flushOutbox() {
    if (!S.welcomed || !S.subscribed || !S.conversation) return;
    const now = Date.now();
    for (const [id, e] of S.outbox) {
      if (e.sentAt && now - e.sentAt < ACK_TIMEOUT_MS) continue;
      const frame = Object.assign({}, e.frame, { conversation: S.conversation });
      if (request(frame, { kind: e.frame.type, id })) e.sentAt = now;
    }
  }

  function submit() {
    const body = clean(input.value);
    if (!body) return;
    const why = C.bodyError(body);
    if (why) {
      setStatus(why === 'long' ? t('tooLongMax', { max: MAX_BODY }) : t('tooLong'), 'warn', 5000);
      return;
    }
    stopTyping();
    const id = newId();
    S.messages.set(id, C.pending(id, S.participant, 'visitor', identity.name, body, ++S.localSeq));
    S.outbox.set(id, { frame: { type: 'send', id, body }, sentAt: 0 });
    input.value = '';
    autosize();
    S.forceScroll = true;
    render();
    if (S.conversation) flushOutbox();
    else ensureConversation();
  }

  function sendTyping(on) {
    if (!S.conversation || !S.subscribed) return false;
    return sendRaw({ type: 'typing', conversation: S.conversation, typing: on });
  }

  function onInput() {
    autosize();
    if (!input.value.trim()) {
      stopTyping();
      return;
    }
    if (!S.conversation) {
      ensureConversation(); // typing needs a conversation: start it at the first keystroke
      return;
    }
    const now = Date.now();
    if (!S.typingSent || now - S.typingSentAt >= TYPING_THROTTLE_MS) {
      if (sendTyping(true)) {
        S.typingSent = true;
        S.typingSentAt = now;
      }
    }
    clearTimeout(S.typingIdle);
    S.typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(S.typingIdle);
    if (S.typingSent) sendTyping(false);
    S.typingSent = false;
  }

  function maybeSendRead() {
    if (!S.welcomed || !S.subscribed || !S.conversation || !S.open) return;
    if (document.visibilityState !== 'visible') return;
    const read = Math.max(S.myRead, S.readSent);
    let need = false;
    for (const m of S.messages.values()) {
      if (!isMine(m) && m.seq > read) { need = true; break; }
    }
    const seq = S.maxSeq;
    if (!need || !seq) return;
    if (request({ type: 'read', conversation: S.conversation, seq }, { kind: 'read', seq })) {
      S.readSent = seq;
      renderBadge();
    }
  }

  // ---------------------------------------------------------------- events

  launcher.addEventListener('click', () => setOpen(!S.open));
  forgetBtn.addEventListener('click', forget);
  closeBtn.addEventListener('click', () => {
    setOpen(false);
    launcher.focus();
  });
  panel.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      setOpen(false);
      launcher.focus();
    }
  });
  input.addEventListener('input', onInput);
  input.addEventListener('blur', stopTyping);
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submit();
    }
  });
  sendBtn.addEventListener('pointerdown', (ev) => ev.preventDefault()); // keep the keyboard open
  sendBtn.addEventListener('click', () => {
    submit();
    input.focus();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') maybeSendRead();
    else stopTyping();
  });
  // Leaving the page ends the session at once (a navigation, or the
  // back/forward cache keeping the page frozen), so the agent sees the
  // visitor go offline within a moment rather than when the node's
  // heartbeat gives up; a page the cache brings back connects again.
  window.addEventListener('pagehide', () => {
    stopTyping();
    S.left = true;
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = 0;
    teardown();
  });
  window.addEventListener('pageshow', (ev) => {
    if (!S.left) return;
    S.left = false;
    if (ev.persisted && (S.open || S.conversation)) connect();
  });

  // ---------------------------------------------------------------- public API

  function init(opts) {
    opts = opts || {};
    const before = convKey();
    const oldName = identity.name;
    const oldToken = identity.identityToken;
    identity.userId = opts.userId != null ? String(opts.userId) : identity.userId;
    identity.userHash = opts.userHash != null ? String(opts.userHash) : identity.userHash;
    identity.identityToken = opts.identityToken != null ? String(opts.identityToken) : identity.identityToken;
    identity.name = opts.name != null ? String(opts.name) : identity.name;
    if (convKey() === before && identity.name === oldName) {
      // A fresh token for the same visitor (before the last one expires)
      // is used by the next hello; after one refused, it connects again.
      if (identity.identityToken !== oldToken && S.fatal) {
        S.fatal = false;
        connect();
      }
      return;
    }
    // A new identity: a new hello, and that identity's own conversation.
    S.fatal = false;
    const hadSocket = Boolean(S.conn);
    teardown();
    S.messages.clear();
    S.outbox.clear();
    S.maxSeq = 0;
    S.vector.clear();
    S.agentRead = 0;
    S.myRead = 0;
    S.conversation = storage.get('localStorage', convKey());
    scheduleRender();
    if (hadSocket || S.open) connect();
  }

  const previous = window.Parley;
  window.Parley = {
    version: PROTOCOL_VERSION,
    init,
    open: () => setOpen(true),
    close: () => setOpen(false),
    toggle: () => setOpen(!S.open),
    setAttributes: (obj) => {
      setAttributes(obj);
      sendContext();
    },
  };
  // Settings a page set before this async script ran: window.Parley = {identityToken, userId, ...}
  // or a queue of calls: window.Parley = {q: [[opts], ...]}.
  if (previous && typeof previous === 'object') {
    if (Array.isArray(previous.q)) previous.q.forEach((args) => init(...[].concat(args)));
    else if (previous.userId || previous.identityToken || previous.name) init(previous);
    if (previous.attributes) setAttributes(previous.attributes);
  }

  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
})();
