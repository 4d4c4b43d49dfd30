"""Phrase tables: intents, requests, opt-outs, red flags, objections, motives, condition.

Each table is a regular expression over folded text (:func:`..normalise.fold`);
:func:`..text._affirmed` keeps only the matches no negation governs.
"""

# Pattern tables read best one alternative per string, some longer than a line.
# ruff: noqa: E501

from __future__ import annotations

import re

from ghl_real_estate_ai.understanding.text import (
    _CLAUSE_BREAK,
    _affirmed,
    _negated,
    _rx,
    finditer,
    search,
    table_may_match,
)

_HOME = r"(?:home|house|condo|townhouse|townhome|place|property|properties)"
_BUY = _rx(
    r"\b(?:looking|want|wanting|wanna|hoping|ready|planning|trying|going|need|like|interested)\s+(?:to\s+|in\s+)?buy(?:ing)?\b",
    rf"\bbuy(?:ing)?\s+(?:a|an|my|our|the)?\s*(?:first\s+|new\s+|bigger\s+|smaller\s+)?{_HOME}\b",
    r"\bfirst[- ]time (?:home ?)?buyers?\b",
    r"\b(?:want|wanting|need|hoping|ready|planning|trying|looking|going)\s+(?:to\s+)?(?:get|find)\s+(?:a |an |our |my )?(?:own |first |new |bigger )?(?:place|home|house|condo|townhouse)\b(?! to rent| for rent| to lease)",
    r"\bhouse[- ]hunting\b|\bhome[- ]shopping\b",
    r"\b(?:cash|va|fha|usda|conventional|investor|qualified) buyers?\b|\bbuyer here\b",
    r"\b(?:any|some|your)\s+(?:(?:\d+|two|three|four|five)[- ]?(?:bed(?:room)?s?|br|bd) )?(?:homes|houses|condos|townhomes|townhouses|properties|listings) (?:for sale|available|on the market|in|near|around|under)\b",
    r"\bin the market (?:for|to buy)\b",
    rf"\blooking (?:for|at) (?:a |an |some )?(?:new |bigger |smaller |(?:\d+|two|three|four|five)[- ]?(?:bed|br|bedroom)\w* )?{_HOME}s?\b",
    r"\b(?:want|wanting|need|needing|looking for|searching for|shopping for|hunting for)\s+(?:a |an )?(?:\d+|two|three|four|five)[- ]?(?:bed(?:room)?s?|br|bd|bdrms?)\b",
    r"\b(?:quiero|queremos|busco|buscamos) comprar\b|\bcomprar (?:una|mi|nuestra|un|nuestro) (?:casa|hogar|condo|departamento|townhouse)\b",
    r"\b(?:busco|buscamos|buscando|andamos buscando|estamos buscando|estoy buscando)\s+(?:una |un |nuestra |mi )?(?:casa|casita|hogar|condo|departamento|townhouse|propiedad)\b(?! (?:para|en|de) (?:rentar|renta|alquilar|alquiler))",
)
_SELL = _rx(
    rf"\bsell(?:ing)?\s+(?:my|our|the|this|mom's|dad's|my parents'|my mom's|my dad's)\s+{_HOME}\b",
    r"\b(?:want|wanting|wanna|looking|hoping|planning|ready|need|needs|trying|thinking|like|considering|interested)\s+(?:about\s+|of\s+|in\s+)?(?:to\s+)?sell(?:ing)?\b",
    r"\b(?:quiero|queremos|necesito|necesitamos|pensamos|planeamos|queriamos) vender\b|\bvender (?:mi|nuestra|la) casa\b",
)
_LIST = _rx(
    rf"\blist(?:ing)?\s+(?:my|our|the|this)\s+{_HOME}\b",
    rf"\b(?:put|putting|get|getting)\s+(?:my|our|the|this|it)\s+(?:{_HOME}\s+)?on the market\b",
    r"\blist (?:it|with you)\b|\blisting (?:agreement|appointment)\b",
)
_VALUE = _rx(
    rf"\bwhat(?:'s|s| is)?\s+(?:my|our|the|this)\s+(?:current |old |own |family |parents' |mom's |dad's )?{_HOME}(?:'s|s| is| would be| could be| be)?\s+(?:really\s+)?worth\b",
    r"\bwhat (?:it'?s|it is|it'?d be|it would be|it could be|its) (?:really )?worth\b",
    r"\bhow much (?:is|would|could|can|will|might)\s+(?:i|we)\s+(?:get|sell)\b",
    rf"\bhow much (?:is |would |could |can |will )?(?:my|our) {_HOME}\b",
    rf"\b{_HOME} (?:value|valuation)\b|\bvalue of (?:my|our) {_HOME}\b",
    rf"\bwhat (?:could|would|can|will|might) (?:my|our|i|we) (?:{_HOME} )?(?:sell|get|list)(?: it)? for\b",
    r"\bwhat (?:ours|mine) (?:is|would be|could be|might be)? ?worth\b|\bwhat (?:ours|mine) (?:would|could|might) (?:sell|go) for\b",
    r"\bmarket value\b|\bcma\b|\bcomparative market analysis\b|\bcuanto (?:vale|valdria|valdra) (?:mi casa|nuestra casa|la nuestra|la mia)\b",
)
_SHOWING = _rx(
    rf"\b(?:see|tour|view|visit|walk through|check out)\s+(?:the|this|that|a|an|some|these|those|any)?\s*(?:{_HOME}s?|listings?|ones?|homes|houses)\b",
    r"\b(?:see|tour|view) (?:it|them) (?:in person|this|tomorrow|today|on)\b",
    r"\bshowings?\b|\b(?:schedule|book|set up) a (?:tour|viewing|visit)\b|\bopen house\b|\bver la casa\b",
    r"\b(?:quiero|queremos|podemos|puedo|me gustaria|nos gustaria) (?:ir a )?ver (?:la|las|esa|esas|una|unas|algunas) (?:casas?|propiedades|opciones)\b",
)
_APPOINTMENT = _rx(
    r"\bappointment\b|\bconsultation\b|\bwalk-?through\b|\bcita\b",
    r"\b(?:can|could|let's|lets|want to|like to|happy to|able to|we should) meet\b",
    r"\bmeet (?:up|with you|in person|tomorrow|today|this week|next week)\b",
    r"\bcome (?:by|over|out|see (?:it|the house|my house))\b",
    r"\b(?:schedule|set up|book)\s+(?:a |an )?(?:time|call|visit|meeting|appointment)\b",
    r"\b(?:puede|pueden|podria|podrian|quiere|quieren) (?:venir|pasar)\b|\bvenga(?:n)? a ver\b|\b(?:agendar|hacer|programar) (?:una )?(?:cita|visita)\b",
)
_HUMAN = _rx(
    r"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a |an |the |your |some )?(?:real |actual |live )?(?:person|human|agent|realtor|someone|somebody|people|broker|representative|rep|jorge)\b",
    r"\b(?:real|actual|live) (?:person|human)\b",
    r"\b(?:call|phone|ring) me\b|\bgive me a (?:call|ring)\b",
    r"\b(?:can|could) (?:someone|somebody|you|an agent|a person) (?:call|phone)\b",
    r"\bhablar con (?:una persona|alguien|un agente|una agente|un humano|una persona real)\b",
    r"\bllamame\b|\bpersona real\b",
)
_PREAPPROVAL = re.compile(r"\bpre[- ]?(?:approved|approval|qualified|qualification)\b|\bpreaprobad[oa]s?\b")
_PENDING = frozenset(
    {"get", "getting", "need", "needs", "working", "will", "should", "going", "apply", "applying"}
)
_FINANCING = _rx(
    r"\blender\b|\bloan officer\b|\bfha\b|\bva loan\b|\bconventional loan\b|\bfinancing\b",
    r"\b(?:get|getting|need) a (?:mortgage|loan)\b",
)

_REPLY_STOP_WORDS = frozenset(
    {
        "stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "opt out", "optout",
        "remove", "remove me", "stop it", "stop texting", "stop messaging", "para", "alto", "cancelar",
        "baja", "detener", "parar", "basta",
    }
)  # fmt: skip
_FILLER = re.compile(r"\b(?:please|pls|plz|por favor|now|thanks|thank you|ok|okay|just)\b")
_RESUME_WORDS = frozenset({"start", "unstop", "resume", "subscribe", "opt in", "optin"})
_OPT_OUT_PHRASES = _rx(
    r"\bstop (?:texting|messaging|contacting|calling|emailing|bothering|spamming)\b",
    r"\bstop (?:sending|getting|receiving) (?:me )?(?:these|this|your|the|any)?\s*(?:texts?|messages?|emails?|sms)\b",
    r"\bstop (?:the |these |your )(?:texts|messages)\b",
    r"\bunsubscribe\b|\bopt (?:me )?out\b|\bremove me from\b|\btake me off\b",
    r"\bdeja(?:r)? de (?:escribirme|enviarme|mandarme|contactarme|llamarme)\b|\bdejen de\b|\bdarme de baja\b",
)
# Already negative in themselves: no negation check.
_OPT_OUT_NEGATIVE = _rx(
    r"\bno more (?:texts|messages|texting|emails|calls|contact|sms)\b",
    r"\b(?:do not|don't|dont|never) (?:text|message|contact|email|sms) (?:me|us)\b",
    r"\bdo not contact\b|\bleave me alone\b|\blose my number\b|\bwrong number\b",
    r"\bno me (?:escriba[sn]?|manden?|envie[sn]?|contacte[sn]?|molest\w+)\b",
    r"\bya no (?:me )?(?:escriba[sn]?|manden?|envie[sn]?)\b",
)

_RED_FLAGS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("foreclosure", _rx(r"\bforeclos\w*", r"\bnotice of default\b", r"\bejecucion hipotecaria\b")),
    ("probate", _rx(r"\bprobate\b", r"\bsucesion testamentaria\b")),
    ("attorney", _rx(r"\battorneys?\b", r"\blawyers?\b", r"\blegal counsel\b", r"\babogad[oa]s?\b")),
    ("bankruptcy", _rx(r"\bbankrupt\w*", r"\bchapter (?:7|11|13)\b", r"\bbancarrota\b", r"\bquiebra\b")),
    ("divorce", _rx(r"\bdivorc\w*")),
    ("lawsuit", _rx(r"\blawsuits?\b", r"\bsu(?:ing|ed)\b", r"\blegal action\b", r"\bdemanda\b")),
    ("tax_lien", _rx(r"\btax liens?\b", r"\bback taxes\b", r"\birs lien\b")),
    ("lien", _rx(r"(?<!tax )\bliens?\b")),
    ("short_sale", _rx(r"\bshort[- ]sale\b")),
    ("eviction", _rx(r"\bevict\w*", r"\bdesalojo\b")),
    ("delinquent_mortgage", _rx(r"\bbehind on (?:my |our |the )?(?:mortgage|house )?payments?\b",
                                r"\bbehind on (?:my |our |the )?mortgage\b",
                                r"\bmissed (?:\w+ )?(?:mortgage )?payments\b")),
)  # fmt: skip

_OBJECTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("price_too_high", _rx(r"\btoo (?:expensive|pricey|high|much)\b", r"\boverpriced\b",
                           r"\bcan'?t afford\b", r"\bout of (?:my|our) (?:budget|price range)\b",
                           r"\bmuy caro\b")),
    ("just_looking", _rx(r"\bjust (?:looking|browsing|curious)\b", r"\bonly looking\b",
                         r"\bsolo (?:estoy )?mirando\b")),
    ("not_ready", _rx(r"\bnot (?:yet )?ready\b", r"\bno (?:rush|hurry)\b", r"\bnot in a (?:rush|hurry)\b",
                      r"\bmaybe later\b", r"\bnot (?:right )?now\b", r"\bdown the road\b", r"\bsomeday\b",
                      r"\btodavia no\b")),
    ("has_agent", _rx(r"\b(?:already )?(?:have|got|working with|using) (?:an? |my )?(?:agent|realtor|broker)\b",
                      r"\bmy (?:agent|realtor)\b")),
    ("commission", _rx(r"\bcommissions?\b", r"\b(?:your|the|agent) fees?\b")),
    ("rates_too_high", _rx(r"\b(?:interest )?rates (?:are )?(?:too )?high\b", r"\bwait(?:ing)? for (?:the )?rates\b",
                           r"\brates (?:to )?(?:drop|come down)\b")),
    ("need_to_think", _rx(r"\bneed to think\b", r"\bthink about it\b",
                          r"\b(?:talk|check) (?:to |with )?my (?:wife|husband|spouse|partner|family)\b")),
    ("market_timing", _rx(r"\bwait (?:for|until) the market\b", r"\bmarket (?:to )?(?:crash|drop|cool)\w*\b",
                          r"\bprices (?:will|to|are going to) (?:drop|come down|fall)\b", r"\bbubble\b")),
    ("not_interested", _rx(r"\bnot interested\b", r"\bno (?:me )?interesa\b")),
)  # fmt: skip

_MOTIVES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("divorce", _rx(r"\bdivorc\w*", r"\bseparat(?:ed|ing|ion)\b")),
    ("inheritance", _rx(r"\binherit\w*", r"\bpassed away\b", r"\bmy late\b", r"\bestate sale\b", r"\bherencia\b",
                        r"\bhered\w*", r"\bfallec\w*")),
    ("financial", _rx(r"\bbehind on (?:my |the |our )?(?:mortgage|payments?)\b",
                      r"\bcan'?t afford (?:the |my |our )?(?:mortgage|payments?|house|home)\b",
                      r"\bfinancial (?:hardship|trouble|reasons|problems)\b", r"\bmoney is tight\b",
                      r"\blost (?:my|our) jobs?\b", r"\bmedical bills\b", r"\bdebts?\b",
                      r"\bno (?:podemos|puedo) pagar\b", r"\bdeudas?\b", r"\bperd\w* (?:mi|el|nuestro) trabajo\b")),
    ("relocation", _rx(r"\brelocat\w*", r"\b(?:job|work) transfer\b", r"\btransferr?(?:ed|ing)\b",
                       r"\bmoving (?:out of state|to another state|across the country|for (?:work|my job|a job))\b",
                       r"\b(?:nos|me) (?:mudamos|mudo|vamos a mudar|tenemos que mudar|tengo que mudar)\b", r"\bmudanza\b",
                       r"\btraslad\w*", r"\bpor (?:el |mi |su )?trabajo\b")),
    ("job", _rx(r"\bnew job\b", r"\bjob offer\b", r"\bgot a job\b", r"\bcloser to work\b", r"\bcommute\b",
                r"\bnuevo trabajo\b", r"\bmas cerca del trabajo\b")),
    ("downsizing", _rx(r"\bdownsiz\w*", r"\btoo big\b", r"\bempty nest\w*", r"\bsmaller (?:home|house|place)\b",
                       r"\bkids (?:moved|are) (?:out|gone)\b", r"\b(?:muy|demasiado) grande\b", r"\bmas pequena\b")),
    ("upsizing", _rx(r"\bupsiz\w*", r"\b(?:need|needs|want|wanting) (?:more|extra) (?:space|room)\b",
                     r"\bbigger (?:home|house|place)\b", r"\bgrowing family\b", r"\bbaby (?:on the way|coming)\b",
                     r"\boutgr[eo]w\w*", r"\bmas espacio\b", r"\bcasa mas grande\b")),
    ("retirement", _rx(r"\bretir\w*", r"\bjubil\w*")),
    ("first_home", _rx(r"\bfirst (?:home|house)\b", r"\bfirst[- ]time (?:home ?)?buyers?\b",
                       r"\btired of (?:renting|paying rent)\b", r"\b(?:stop|done) renting\b", r"\bprimera casa\b",
                       r"\bcansad[oa]s? de (?:rentar|pagar renta)\b")),
    ("investment", _rx(r"\binvestment\b", r"\binvestors?\b", r"\brental (?:property|properties|income)\b", r"\brentals\b",
                       r"\bcash ?flow\b", r"\bflip\b", r"\binversion\b", r"\bpara rentar\b")),
)  # fmt: skip

_CONDITIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("needs_work", _rx(r"\bneeds? (?:a lot of |lots of |major |serious |a ton of |any )?(?:work|repairs?|fixing|renovation|rehab)\b",
                       r"\bfixer(?:[- ]upper)?\b", r"\bas[- ]is\b", r"\broof (?:leaks?|is leaking)\b",
                       r"\bfoundation (?:issues?|problems?|cracks?)\b", r"\bwater damage\b", r"\bmold\b",
                       r"\bneeds a new (?:roof|kitchen|hvac|ac|foundation)\b", r"\bmal estado\b",
                       r"\bmalas condiciones\b", r"\bnecesita (?:muchas |mucho |bastantes )?(?:reparaciones|trabajo|arreglos)\b")),
    ("fair", _rx(r"\bneeds? (?:some|a little|minor|a few|some minor) (?:updates?|updating|tlc|touch[- ]ups|cosmetic work|paint|work|repairs)\b",
                 r"\bfair (?:condition|shape)\b", r"\b(?:ok|okay|decent|average) (?:condition|shape)\b", r"\bdated\b",
                 r"\bcould use (?:some )?(?:updates|updating|work|paint|tlc)\b", r"\bcosmetic\b", r"\btlc\b",
                 r"\bnecesita (?:algunas|algunos|unas|unos|pocas|pocos) (?:reparaciones|arreglos|cambios|detalles)\b", r"\bcondiciones regulares\b", r"\bregular estado\b")),
    ("good", _rx(r"\bgood (?:condition|shape)\b", r"\bwell[- ](?:maintained|kept)\b", r"\bgreat (?:condition|shape)\b",
                 r"\bsolid (?:condition|shape)\b", r"\bupdated\b",
                 r"\bnew (?:roof|paint|carpet|floors|flooring|windows|hvac|ac|kitchen)\b", r"\bbuen estado\b",
                 r"\bbuenas condiciones\b", r"\bbien cuidad[ao]\b")),
    ("excellent", _rx(r"\bexcellent (?:condition|shape)\b", r"\bperfect (?:condition|shape)\b", r"\bmint\b",
                      r"\bmove[- ]in ready\b", r"\bturn ?key\b", r"\b(?:fully|completely|totally) (?:renovated|remodeled|updated)\b",
                      r"\b(?:brand|like) new\b", r"\bpristine\b", r"\bexcelente estado\b",
                      r"\b(?:excelentes|perfectas) condiciones\b", r"\bcomo nuev[ao]\b", r"\bremodelad[ao]\b")),
)  # fmt: skip
# "not in good shape" reads as fair; "doesn't need any work" as good.
_NEGATED_CONDITION = {"excellent": "good", "good": "fair", "fair": "good", "needs_work": "good"}

_ADDRESS = re.compile(
    r"\b\d{1,6}\s+(?:[NSEW]\.?\s+)?(?:(?:\d+(?:st|nd|rd|th)|[A-Za-z][A-Za-z'.-]*)\s+){0,3}?"
    r"(?:(?i:St|Street|Ave|Avenue|Rd|Road|Dr|Blvd|Boulevard|Ln|Ct|Pkwy|Parkway|Cir|Hwy|Highway)"
    r"|Way|Place|Pl|Court|Circle|Drive|Lane|Trail|Terrace|Loop|Square)\b\.?"
)


def _strip_filler(text: str) -> str:
    text = _FILLER.sub(" ", text)
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _first_words(phrases: frozenset[str]) -> tuple[str, ...]:
    """The first word of each phrase: :func:`_strip_filler` only removes, so each word it leaves
    is in the text it was given, and a text none of them is in cannot be stripped to a phrase."""
    return tuple(sorted({phrase.split()[0] for phrase in phrases}))


_STOP_FIRST_WORDS = _first_words(_REPLY_STOP_WORDS)
_RESUME_FIRST_WORDS = _first_words(_RESUME_WORDS)


def _is_resume_word(text: str) -> bool:
    """The message is nothing but a resume word ("start", "opt in"), fillers aside."""
    return any(map(text.__contains__, _RESUME_FIRST_WORDS)) and _strip_filler(text) in _RESUME_WORDS


def _is_opt_out(text: str) -> bool:
    if any(map(text.__contains__, _STOP_FIRST_WORDS)):
        if _strip_filler(text) in _REPLY_STOP_WORDS:
            return True
        for sentence in re.split(r"[.!?;\n,]+", text):
            if sentence.strip() and _strip_filler(sentence) in _REPLY_STOP_WORDS:
                return True
    if search(_OPT_OUT_NEGATIVE, text):
        return True
    return _affirmed(_OPT_OUT_PHRASES, text) is not None


def _sentence_is_question(text: str, pos: int) -> bool:
    rest = text[pos:]
    end = re.search(r"[.!?\n]", rest)
    return end is not None and end.group() == "?"


def _preapproval(text: str) -> bool | None:
    result: bool | None = None
    for match in finditer(_PREAPPROVAL, text):
        if _sentence_is_question(text, match.end()):
            continue
        head_words = re.findall(r"[a-z']+", _CLAUSE_BREAK.split(text[: match.start()])[-1])[-3:]
        tail = text[match.end() : match.end() + 12]
        if _negated(text, match.start()) or any(w in _PENDING for w in head_words) or " yet" in tail:
            result = False
        else:
            result = True
    return result


def _latest_category(text: str, table: tuple[tuple[str, re.Pattern[str]], ...]) -> tuple[str, bool] | None:
    """The category whose match ends last (longest on ties), and whether it is negated."""
    if not table_may_match(table, text):
        return None
    best: tuple[int, int, str, bool] | None = None
    for name, pattern in table:
        for match in finditer(pattern, text):
            key = (match.end(), match.end() - match.start())
            if best is None or key > best[:2]:
                best = (*key, name, _negated(text, match.start()))
    return None if best is None else (best[2], best[3])
