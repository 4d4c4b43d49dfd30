"""The Spanish text of the reply templates, for contacts who write in Spanish.

Keys are those of :data:`ghl_real_estate_ai.bots.templates.TEMPLATES`, with the
same values to fill in; a template missing here is sent in English (the call
task for the agent is one: the agent reads English). Written in the polite
"usted", short enough for two SMS segments like the English ones.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["TEMPLATES_ES"]

TEMPLATES_ES: Mapping[str, str] = {
    # --- lead bot -----------------------------------------------------------
    "lead_greeting": "Hola {first_name}, ¡gracias por escribirnos! ¿Está pensando en comprar una casa, "
    "vender la suya, o las dos cosas?",
    "lead_ask_intent": "Con gusto le ayudo, {first_name}. ¿Busca comprar, vender, o solo saber cuánto "
    "vale su casa?",
    "lead_ask_timeline": "¿Para cuándo le gustaría mudarse, {first_name}?",
    # --- seller qualification ----------------------------------------------------
    "seller_q_motivation": "¡Gracias, {first_name}! ¿Qué lo motiva a mudarse: un trabajo nuevo, más o "
    "menos espacio, otra cosa?",
    "seller_q_timeline": "Entendido. Si el precio fuera el correcto, ¿le funcionaría vender en los "
    "próximos 30 a 45 días?",
    "seller_q_condition": "¿Cómo describiría el estado de la casa: lista para mudarse, en buen estado, "
    "necesita algunos arreglos, o necesita mucho trabajo?",
    "seller_q_price": "¿Tiene en mente un precio que le gustaría obtener por la casa?",
    "seller_qualified": "Gracias {first_name}, ya tengo una idea clara. El siguiente paso es una visita "
    "rápida para darle un número exacto. ¿Le busco un horario?",
    # --- buyer qualification -----------------------------------------------------
    "buyer_q_budget": "¡Muy bien, {first_name}! ¿En qué rango de precio se siente cómodo?",
    "buyer_q_preapproval": "¿Ya está preaprobado con un prestamista? Si no, le puedo presentar uno de "
    "confianza.",
    "buyer_q_bedrooms_areas": "¿Cuántas recámaras necesita y en qué zonas está buscando?",
    "buyer_q_timeline": "¿Para cuándo espera estar en su nueva casa?",
    "buyer_affordability": "Con lo que me contó, casas de hasta unos ${max_price:,} deberían entrar en "
    "su presupuesto. ¿Le envío algunas que coincidan?",
    "buyer_qualified": "Ya está listo para empezar a ver casas, {first_name}. ¿Le agendo una visita?",
    # --- CMA ------------------------------------------------------------------
    "cma_summary": "Según {comp_count} ventas recientes cerca de usted en {area}, su casa probablemente "
    "vale unos ${estimate:,} (entre ${low:,} y ${high:,}). ¿Quiere una visita para un número exacto?",
    "cma_need_details": "¡Con gusto calculo el valor! ¿En qué ciudad está la casa, y más o menos "
    "cuántas recámaras y pies cuadrados tiene?",
    "cma_unavailable": "No tengo suficientes ventas recientes en {area} para darle un número justo por "
    "mensaje. ¿Quiere que un agente le prepare uno?",
    # --- showings and appointments -----------------------------------------------
    "showing_offer": "Le puedo mostrar casas {slot_1} o {slot_2}. ¿Qué le queda mejor?",
    "showing_confirmed": "Quedó agendada su visita {slot}. ¡Nos vemos, {first_name}!",
    "appointment_offer": "Puedo pasar a ver la casa {slot_1} o {slot_2}. ¿Qué le queda mejor?",
    "appointment_confirmed": "Perfecto, quedó agendado para {slot}. ¡Hablamos pronto, {first_name}!",
    "booking_pending": "Le estoy apartando {slot} y le escribo en cuanto esté confirmado, {first_name}.",
    "no_slots": "Nuestra agenda está llena los próximos días. {agent_name} se comunicará con usted "
    "para encontrar un horario.",
    # --- handoffs ---------------------------------------------------------------
    "handoff_lead_to_buyer": "¡Parece que está listo para comprar, {first_name}! Encontremos la casa "
    "indicada.",
    "handoff_lead_to_seller": "Parece que está pensando en vender, {first_name}. Consigamos el mejor precio.",
    "handoff_buyer_to_seller": "Como también vendería su casa actual, empecemos por ahí: eso define su "
    "presupuesto de compra.",
    "handoff_seller_to_buyer": "Muy bien, también busquemos su próxima casa para que la mudanza sea "
    "sencilla.",
    "handoff_seller_to_buyer_after_listing": "Con la visita para la venta ya agendada, busquemos "
    "también su próxima casa.",
    # --- opt-out, escalation, objections ------------------------------------------
    "opt_in_confirmation": "¡Bienvenido de nuevo, {first_name}! Volverá a recibir nuestros mensajes. "
    "¿Está pensando en comprar, vender, o las dos cosas?",
    "opt_out_confirmation": "Ya no recibirá más mensajes nuestros. Responda START cuando quiera volver a "
    "recibirlos.",
    "escalation_notice": "Gracias, {first_name}. Le paso esto a {agent_name}, quien se comunicará con "
    "usted personalmente muy pronto.",
    "objection_price_too_high": "Es comprensible. Los precios cambian mucho de una calle a otra; ¿le "
    "envío opciones en un rango más bajo?",
    "objection_just_looking": "¡Sin ninguna presión! ¿Le envío las casas nuevas que coincidan con lo "
    "que le gusta, para que las vea con calma?",
    "objection_not_ready": "Sin prisa, {first_name}. ¿Cuándo cree que sería un buen momento?",
    "objection_has_agent": "¡Qué bueno que está en buenas manos! Si algo cambia, aquí estoy.",
    "objection_commission": "Buena pregunta. Nuestra tarifa depende de los servicios que elija; con "
    "gusto se la explico en una llamada corta.",
    # --- follow-ups ---------------------------------------------------------------
    "followup_day_3": "Hola {first_name}, solo quería saber cómo va. ¿Tiene alguna pregunta sobre "
    "comprar o vender?",
    "followup_day_14_email_subject": "{first_name}, novedades del mercado de su zona",
    "followup_day_14_email_html": "<p>Hola {first_name},</p><p>Quería contarle cómo se están vendiendo "
    "las casas en su zona y ver si le puedo ayudar con sus planes.</p><p>Responda a este correo o "
    "escríbame cuando quiera.</p><p>{agent_name}</p>",
    "followup_day_14_email_html_cma": "<p>Hola {first_name},</p><p>Según {comp_count} ventas recientes "
    "en {area}, las casas como la suya se venden en unos <strong>${estimate:,}</strong> (entre "
    "${low:,} y ${high:,}).</p><p>¿Quiere un número exacto para su casa? Solo responda a este "
    "correo.</p><p>{agent_name}</p>",
    "followup_day_30": "Hola {first_name}, por ahora dejaré de escribirle. Cuando esté listo para "
    "comprar o vender, solo mándeme un mensaje.",
    # --- second phrasings ---------------------------------------------------------
    "lead_ask_intent_2": "Para orientarle bien: ¿quiere comprar, vender, o un poco de las dos?",
    "lead_ask_timeline_2": "Más o menos, ¿cuándo le gustaría mudarse: esta temporada, este año, o más "
    "adelante?",
    "buyer_q_budget_2": "¿Cuánto es lo máximo que quisiera gastar en la nueva casa?",
    "buyer_q_preapproval_2": "¿Ya habló con un prestamista sobre la preaprobación? Hace mucho más fuerte "
    "una oferta.",
    "buyer_q_bedrooms_areas_2": "¿De qué tamaño busca la casa y en qué vecindarios busco?",
    "buyer_q_timeline_2": "¿Qué tan pronto le gustaría mudarse?",
    "seller_q_motivation_2": "¿Qué lo tiene pensando en vender ahora?",
    "seller_q_timeline_2": "¿Para cuándo quisiera tener la venta lista?",
    "seller_q_condition_2": "¿En qué estado está la casa: lista para mostrarse, o necesita algo de trabajo?",
    "seller_q_price_2": "¿Con qué precio quedaría contento?",
    "cma_need_details_2": "Para ponerle precio solo necesito la ciudad y más o menos cuántas recámaras "
    "y pies cuadrados tiene.",
    # --- answers to the lead's own question ------------------------------------------
    "answer_process": "Así funciona: hablamos de sus metas, le trazo los pasos, arrancamos con el "
    "primero y lo acompaño hasta el cierre.",
    "answer_fees": "Buena pregunta. Nuestra tarifa depende de los servicios que elija; {agent_name} se "
    "la puede explicar en una llamada corta.",
    "answer_availability": "Sí, le puedo ayudar. Lo reviso y le aviso qué hay disponible.",
    "answer_market": "En {area}, {comp_count} ventas recientes tuvieron un precio medio de ${median:,}.",
    "answer_market_unknown": "Los precios dependen mucho del vecindario; dígame la zona y le busco las "
    "ventas recientes.",
    "answer_other": "Buena pregunta; me aseguraré de que {agent_name} le dé una respuesta completa.",
    # --- not a prospect ------------------------------------------------------------
    "close_renter": "¡Gracias por avisarme! Nosotros nos dedicamos a comprar y vender casas, así que no "
    "le molesto más. Si algún día quiere comprar, solo escríbame.",
    "close_has_agent": "¡Qué bueno que está en buenas manos! No le escribiré más. Si algo cambia, aquí "
    "estoy.",
    "close_wrong_number": "Disculpe, fue un error de nuestra parte. No le volveremos a escribir.",
    "close_not_interested": "Entendido, gracias por avisarme. No le daré seguimiento; escríbame cuando "
    "quiera si algo cambia.",
}
"""Spanish text per template name."""
