"""Sentences for the generated demo crawl (written for tokenmill; no outside data)."""

SENTENCES = {
    "en": [
        "The city council met on Tuesday evening to discuss the new budget for public libraries.",
        "Several residents asked why the opening hours had been cut during the winter months.",
        "The mayor explained that heating costs had risen sharply over the last two years.",
        "A local teacher said that children depend on the library after school because many homes have no quiet place to study.",
        "The proposal includes funding for two new librarians and a small reading room for teenagers.",
        "Researchers at the university have published a study on how rivers carry plastic to the sea.",
        "They collected water samples at twelve points along the river over a period of eighteen months.",
        "Most of the particles they found were smaller than a grain of sand and came from car tyres.",
        "The authors suggest that better road drainage could stop a large share of this pollution.",
        "Farmers in the valley are preparing for a harvest that is expected to be later than usual.",
        "Heavy rain in the spring delayed planting by almost three weeks in some fields.",
        "Prices for apples and pears have already started to rise in the local markets.",
        "The museum will open a new exhibition about the history of printing next month.",
        "Visitors will be able to try an old wooden press and set type by hand.",
        "The curator said that the printing press changed how ideas travelled across Europe.",
        "Cycling to work has become more popular since the new bridge opened in the spring.",
        "The council counted almost twice as many bicycles on the main road as a year ago.",
        "Shop owners were worried at first, but many now say that business has improved.",
        "A small bakery on the corner has been selling bread from the same recipe for forty years.",
        "The owner gets up at four every morning and still shapes every loaf by hand.",
    ],
    "de": [
        "Der Stadtrat hat am Dienstagabend über den neuen Haushalt für die öffentlichen Bibliotheken beraten.",
        "Mehrere Bürger fragten, warum die Öffnungszeiten in den Wintermonaten gekürzt worden waren.",
        "Der Bürgermeister erklärte, dass die Heizkosten in den letzten zwei Jahren stark gestiegen seien.",
        "Eine Lehrerin sagte, dass viele Kinder nach der Schule auf die Bibliothek angewiesen sind.",
        "Forscher der Universität haben eine Studie darüber veröffentlicht, wie Flüsse Plastik ins Meer tragen.",
        "Sie nahmen über einen Zeitraum von achtzehn Monaten an zwölf Stellen Wasserproben.",
        "Die meisten Teilchen waren kleiner als ein Sandkorn und stammten von Autoreifen.",
        "Die Landwirte im Tal bereiten sich auf eine Ernte vor, die später als gewöhnlich erwartet wird.",
        "Starker Regen im Frühjahr hat die Aussaat auf manchen Feldern um fast drei Wochen verzögert.",
        "Das Museum eröffnet im nächsten Monat eine neue Ausstellung über die Geschichte des Buchdrucks.",
        "Die Besucher können eine alte Holzpresse ausprobieren und Buchstaben von Hand setzen.",
        "Seit die neue Brücke im Frühjahr eröffnet wurde, fahren mehr Menschen mit dem Fahrrad zur Arbeit.",
        "Eine kleine Bäckerei an der Ecke backt ihr Brot seit vierzig Jahren nach demselben Rezept.",
        "Der Inhaber steht jeden Morgen um vier Uhr auf und formt jedes Brot noch von Hand.",
    ],
    "fr": [
        "Le conseil municipal s'est réuni mardi soir pour discuter du nouveau budget des bibliothèques.",
        "Plusieurs habitants ont demandé pourquoi les horaires d'ouverture avaient été réduits en hiver.",
        "Le maire a expliqué que les frais de chauffage avaient fortement augmenté depuis deux ans.",
        "Des chercheurs de l'université ont publié une étude sur la manière dont les rivières transportent le plastique vers la mer.",
        "Ils ont prélevé des échantillons d'eau en douze points le long de la rivière pendant dix-huit mois.",
        "La plupart des particules étaient plus petites qu'un grain de sable et provenaient de pneus.",
        "Les agriculteurs de la vallée se préparent à une récolte plus tardive que d'habitude.",
        "Le musée ouvrira le mois prochain une nouvelle exposition sur l'histoire de l'imprimerie.",
        "Les visiteurs pourront essayer une ancienne presse en bois et composer des lettres à la main.",
        "Une petite boulangerie du quartier vend le même pain depuis quarante ans.",
    ],
    "es": [
        "El ayuntamiento se reunió el martes por la tarde para hablar del nuevo presupuesto de las bibliotecas.",
        "Varios vecinos preguntaron por qué se habían reducido los horarios durante el invierno.",
        "El alcalde explicó que los costes de calefacción habían subido mucho en los últimos dos años.",
        "Investigadores de la universidad han publicado un estudio sobre cómo los ríos llevan plástico al mar.",
        "Tomaron muestras de agua en doce puntos del río durante dieciocho meses.",
        "Los agricultores del valle se preparan para una cosecha más tardía de lo habitual.",
        "El museo abrirá el mes que viene una exposición sobre la historia de la imprenta.",
        "Una pequeña panadería de la esquina vende el mismo pan desde hace cuarenta años.",
    ],
    "zh": [
        "市议会周二晚上开会讨论了公共图书馆的新预算。",
        "几位居民询问为什么冬季的开放时间被缩短了。",
        "市长解释说，过去两年取暖费用大幅上涨。",
        "大学的研究人员发表了一项关于河流如何把塑料带入大海的研究。",
        "他们在十八个月里沿着河流的十二个地点采集了水样。",
        "山谷里的农民正在为比往年更晚的收获做准备。",
        "博物馆下个月将开设一个关于印刷历史的新展览。",
        "街角的一家小面包店四十年来一直用同一个配方烤面包。",
    ],
}

NAV = {
    "en": ["Home", "News", "Sport", "Culture", "Contact", "Subscribe"],
    "de": ["Startseite", "Nachrichten", "Sport", "Kultur", "Kontakt", "Abo"],
    "fr": ["Accueil", "Actualités", "Sport", "Culture", "Contact", "Abonnement"],
    "es": ["Inicio", "Noticias", "Deportes", "Cultura", "Contacto", "Suscribirse"],
    "zh": ["首页", "新闻", "体育", "文化", "联系我们", "订阅"],
}

FOOTER = "© 2024 Example Media Group. All rights reserved. Privacy policy · Cookie settings · Imprint"

SPAM = [
    "buy cheap pills online best price buy now",
    "click here click here click here win money fast",
    "casino bonus casino bonus free spins free spins",
]

PII_LINES = [
    "For questions write to the editor at jane.doe@example-news.com or call +44 20 7946 0958.",
    "Die Redaktion erreichen Sie unter redaktion@beispiel-zeitung.de oder telefonisch unter 030 12345678.",
    "Contact our office at (555) 013-4477 or email press@city-council.org for more information.",
]
