"""The words of the policy, in English and Simplified Chinese, built around the catalog.

``build(catalog, lang, data_map_rows)`` returns a ``Document`` that follows
the seed policy section by section, in its order and numbering. Everything
that the software decides (functions, categories, legal bases, retention,
permissions, cookies, SDKs, third parties, the response time, the contact
address, the version and its changes) comes from the catalog or the data
map; the prose around it paraphrases the seed. Each sentence is written
once in each language, side by side, so the two versions cannot drift apart.
"""

from __future__ import annotations

import re
from datetime import date

from kares.privacy.catalog import Catalog, Feature, Retention, Text
from kares.privacy.datamap import DataMapRow
from kares.privacy.document import (
    Block,
    Card,
    Contents,
    Document,
    Items,
    Paragraph,
    Section,
    Table,
)

LANGS = ("en", "zh")

# The seed's top-level sections, in its order (7 has a heading only in the
# seed's table of contents).
TOP_TITLES: dict[str, tuple[str, str]] = {
    "1": (
        "The Information We Collect and the Corresponding Purposes",
        "我们收集的信息及相应的使用目的",
    ),
    "2": ("How We Use Cookies and Similar Technologies", "我们如何使用 Cookie 和同类技术"),
    "3": (
        "How We Share, Transfer, Disclose, and Entrust the Processing of Your Personal "
        "Information and the Third Parties We Access",
        "我们如何共享、转让、公开披露、委托处理您的个人信息及我们接入的第三方",
    ),
    "4": ("How We Save and Protect Your Personal Information", "我们如何保存和保护您的个人信息"),
    "5": ("Your Rights", "您的权利"),
    "6": ("How We Handle Minors' Personal Information", "我们如何处理未成年人的个人信息"),
    "7": ("Access Network Method", "接入网络方式"),
    "8": ("Revisions to the Privacy Policy", "隐私政策的修订"),
    "9": ("How to Contact Us", "如何联系我们"),
}

MINOR_CATEGORY = "minors.guardianship"
AGE_CATEGORY = "account.age"
GUARDIAN_FUNCTION = "privacy_choices"


def section_id(number: str) -> str:
    return "s" + number.replace(".", "-")


def format_date(d: date, lang: str) -> str:
    if lang == "zh":
        return f"{d.year}年{d.month}月{d.day}日"
    return f"{d:%B} {d.day}, {d.year}"


def article(text: str, lang: str) -> str:
    """'PIPL 13(1), 29' -> '《个人信息保护法》第13条第1项、第29条' in Chinese."""
    if lang != "zh" or not text.startswith("PIPL "):
        return text
    parts = []
    for p in text[len("PIPL ") :].split(","):
        p = p.strip()
        m = re.fullmatch(r"(\d+)\((\d+)\)", p)
        if m:
            parts.append(f"第{m.group(1)}条第{m.group(2)}项")
        elif p.isdigit():
            parts.append(f"第{p}条")
        else:
            return text
    return "《个人信息保护法》" + "、".join(parts)


class _Builder:
    def __init__(self, cat: Catalog, lang: str, rows: list[DataMapRow]) -> None:
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        self.cat = cat
        self.lang = lang
        self.rows = rows
        self.p = cat.policy
        self.digest = cat.digest()

    # --- small helpers -----------------------------------------------------------

    def t(self, en: str, zh: str) -> str:
        return zh if self.lang == "zh" else en

    def tx(self, text: Text) -> str:
        return text.get(self.lang)

    def join(self, items: list[str]) -> str:
        return self.t(", ", "、").join(items)

    def join_word(self, items: list[str], en_word: str, zh_word: str) -> str:
        if len(items) <= 1:
            return "".join(items)
        if self.lang == "zh":
            return "、".join(items[:-1]) + zh_word + items[-1]
        return ", ".join(items[:-1]) + f" {en_word} " + items[-1]

    def paren(self, inner: str) -> str:
        return self.t(f" ({inner})", f"（{inner}）")

    def yes_no(self, v: bool | None) -> str:
        if v is None:
            return ""
        return self.t("Yes", "是") if v else self.t("No", "否")

    def cat_name(self, key: str) -> str:
        return self.tx(self.cat.categories[key].name)

    def cat_inline(self, key: str) -> str:
        """A category's name in the middle of a sentence ('approximate location')."""
        name = self.cat_name(key)
        if self.lang == "en" and len(name) > 1 and name[0].isupper() and name[1].islower():
            return name[0].lower() + name[1:]
        return name

    def fn_name(self, key: str) -> str:
        return self.tx(self.cat.functions[key].name)

    def perm_name(self, key: str) -> str:
        return self.tx(self.cat.permissions[key].name)

    def basis(self, key: str) -> str:
        lb = self.cat.legal_bases[key]
        return self.tx(lb.name) + self.paren(article(lb.article, self.lang))

    def then_word(self, r: Retention) -> str:
        if r.then == "anonymise":
            return self.t("anonymised", "匿名化处理")
        return self.t("deleted", "删除")

    def retention(self, r: Retention) -> str:
        if r.days is not None:
            return self.t(
                f"kept for {r.days} days from collection, then {self.then_word(r)}",
                f"自收集之日起保存 {r.days} 天，到期后{self.then_word(r)}",
            )
        return self.t(
            f"kept while your account exists, then {self.then_word(r)}",
            f"在您的账号存续期间保存，注销账号后{self.then_word(r)}",
        )

    def retention_short(self, r: Retention) -> str:
        if r.days is not None:
            return self.t(f"{r.days} days from collection", f"自收集之日起 {r.days} 天")
        return self.t("While your account exists", "账号存续期间")

    def feature_label(self, fkey: str, name: str) -> str:
        return self.tx(self.cat.functions[fkey].features[name].name)

    def feature_permissions(self, feat: Feature) -> str:
        parts = []
        if feat.permissions:
            names = [self.perm_name(p) for p in feat.permissions]
            parts.append(self.join_word(names, "and", "和"))
        if feat.any_permission:
            names = [self.perm_name(p) for p in feat.any_permission]
            parts.append(self.join_word(names, "or", "或"))
        return self.t(" and ", "和").join(parts)

    def stops(self, pkey: str) -> list[str]:
        """The features that stop when permission ``pkey`` is closed."""
        out = []
        for fkey, f in self.cat.functions.items():
            for name, feat in f.features.items():
                label = self.feature_label(fkey, name)
                if pkey in feat.permissions:
                    out.append(label)
                elif pkey in feat.any_permission:
                    others = [self.perm_name(p) for p in feat.any_permission if p != pkey]
                    if not others:
                        out.append(label)
                    else:
                        alt = self.join_word(others, "or", "或")
                        out.append(
                            self.t(
                                f"{label} (keeps working while {alt} is allowed)",
                                f"{label}（{alt}仍开启时可继续使用）",
                            )
                        )
        return out

    def category_line(self, key: str) -> str:
        c = self.cat.categories[key]
        notes = []
        if c.sensitive:
            notes.append(
                self.t(
                    "sensitive personal information, processed only with your separate consent",
                    "敏感个人信息，仅在取得您的单独同意后处理",
                )
            )
            if c.fallback is not None:
                fb = self.cat_inline(c.fallback)
                notes.append(
                    self.t(f"without that consent only {fb} is used", f"未同意时仅使用{fb}")
                )
        notes.append(self.retention(c.retention))
        return self.cat_name(key) + self.t(" — ", "——") + self.t("; ", "；").join(notes)

    def cats_marked(self, keys: list[str]) -> str:
        if not keys:
            return self.t("no personal information", "不涉及个人信息")
        out = []
        for k in keys:
            name = self.cat_name(k)
            if self.cat.categories[k].sensitive:
                name += self.t(" (sensitive)", "（敏感）")
            out.append(name)
        return self.t("; ", "；").join(out)

    def no_consent_bases(self) -> list[str]:
        out = []
        for key, lb in self.cat.legal_bases.items():
            if lb.needs_consent:
                continue
            line = self.basis(key)
            users = [
                self.fn_name(f) for f, fn in self.cat.functions.items() if fn.legal_basis == key
            ]
            if users:
                line += self.t(
                    f" — the basis of: {self.join(users)}", f"——适用于：{self.join(users)}"
                )
            out.append(line)
        return out

    def card(self, fkey: str) -> Card:
        f = self.cat.functions[fkey]
        fields: list[tuple[str, str | list[str]]] = []
        sensitive = any(self.cat.categories[c].sensitive for c in f.categories)
        if f.kind == "basic" and not f.categories:
            kind = self.t(
                "Basic function; it uses no personal information", "基本功能，不涉及个人信息"
            )
        elif f.kind == "basic":
            kind = self.t(
                "Basic function: covered by your agreement to this policy",
                "基本功能：您同意本政策即涵盖此功能",
            )
            if sensitive:
                kind += self.t(
                    "; its sensitive personal information needs your separate consent",
                    "；其中的敏感个人信息需另行取得您的单独同意",
                )
            if f.consent_exempt:
                kind += self.t(
                    "; available before you give any consent", "；在您作出任何同意之前即可使用"
                )
        else:
            kind = self.t(
                "Extended function: we ask for your consent when you first use it, "
                "and you can withdraw it at any time",
                "扩展功能：您首次使用时我们会征求您的同意，您可以随时撤回",
            )
        fields.append((self.t("Kind", "类型"), kind))
        fields.append((self.t("Purpose", "处理目的"), self.tx(f.purpose)))
        fields.append((self.t("Legal basis", "合法性基础"), self.basis(f.legal_basis)))
        cats = [self.category_line(c) for c in f.categories]
        fields.append(
            (
                self.t("Personal information", "个人信息"),
                cats or self.t("None", "不涉及个人信息"),
            )
        )
        perms = [
            f"{self.feature_label(fkey, name)}{self.t(': ', '：')}{self.feature_permissions(feat)}"
            for name, feat in f.features.items()
            if feat.permissions or feat.any_permission
        ]
        if perms:
            fields.append((self.t("Device permissions", "设备权限"), perms))
        tps = self.cat.third_parties_receiving(f.categories)
        if tps:
            names = [self.tx(self.cat.third_parties[k].name) for k in tps]
            fields.append(
                (
                    self.t("Provided to", "提供给"),
                    self.join(names) + self.t(" (see 3.1)", "（见 3.1）"),
                )
            )
        return Card(id=f"function-{fkey}", title=self.fn_name(fkey), fields=fields)

    def cards_for(self, section: str) -> list[Block]:
        return [self.card(k) for k, f in self.cat.functions.items() if f.section == section]

    # --- the document --------------------------------------------------------------

    def build(self) -> Document:
        known = {
            "1", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.6.1", "1.6.2",
            "5.3", "Openness",
        }  # fmt: skip
        intro = self.intro()
        principles = self.principles()
        numbered = [
            self.s1(other=[k for k, f in self.cat.functions.items() if f.section not in known]),
            self.s2(),
            self.s3(),
            self.s4(),
            self.s5(),
            self.s6(),
            self.s7(),
            self.s8(),
            self.s9(),
        ]
        intro.blocks.append(
            Paragraph(self.t("This privacy policy covers:", "本隐私政策将帮助您了解以下内容："))
        )
        intro.blocks.append(Contents([(s.id, s.heading) for s in numbered]))
        sections = [intro, principles, *numbered, self.definitions(), self.data_map()]
        p = self.p
        meta = [
            self.t("Updated: ", "更新日期：") + format_date(p.date, self.lang),
            self.t("Effective date: ", "生效日期：") + format_date(p.effective, self.lang),
            self.t("Version: ", "版本：") + p.version,
        ]
        info = {
            "version": p.version,
            "date": str(p.date),  # ISO 8601
            "effective": str(p.effective),
            "significant": p.significant,
            "changes": [self.tx(c) for c in p.changes],
            "operator": self.tx(p.operator),
            "contact_email": p.contact_email,
            "response_working_days": p.response_working_days,
            "catalog_digest": self.digest,
        }
        return Document(
            lang=self.lang,
            title=self.t("Kares Privacy Policy", "Kares 隐私政策"),
            meta=meta,
            sections=sections,
            info=info,
        )

    def top(self, number: str, blocks: list[Block], subs: list[Section]) -> Section:
        return Section(section_id(number), number, self.t(*TOP_TITLES[number]), blocks, subs)

    def sub(self, number: str, en: str, zh: str, blocks: list[Block]) -> Section:
        return Section(section_id(number), number, self.t(en, zh), blocks)

    # --- introduction and principles ---------------------------------------------

    def intro(self) -> Section:
        op = self.tx(self.p.operator)
        basic = [k for k, f in self.cat.functions.items() if f.kind == "basic"]
        extended = [k for k, f in self.cat.functions.items() if f.kind == "extended"]
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    f'Welcome to Kares! Kares is provided by {op} ("we" or "us" in this '
                    "policy). We take your privacy and the protection of your personal "
                    "information seriously. This privacy policy applies to your access to and "
                    "use of every service that Kares provides, by whatever means.",
                    f"欢迎您使用 Kares 提供的服务！Kares 由{op}（本政策中亦称“我们”）提供。"
                    "我们非常重视您的隐私和个人信息保护。本隐私政策适用于您通过任何方式访问和使用 "
                    "Kares 提供的全部服务。",
                )
            ),
            Paragraph(
                self.t(
                    "We process only the personal information that is necessary for the basic "
                    "functions you use.",
                    "我们仅会处理您使用基本功能服务所必需的个人信息。",
                )
            ),
            Paragraph(
                self.t(
                    "This policy applies when you use our products and services through:",
                    "本隐私政策适用于您通过以下途径访问和使用我们的产品和服务：",
                )
            ),
            Items(
                [
                    self.t("the Kares web portal;", "Kares 网页端；"),
                    self.t(
                        "mobile terminals, including the Kares apps and mini-programs;",
                        "移动端，包括 Kares 应用程序和小程序；",
                    ),
                    self.t(
                        "the software development kits (SDKs) and application programming "
                        "interfaces (APIs) we provide to third-party websites and applications;",
                        "我们为第三方网站和应用程序提供的软件开发工具包（SDK）和应用程序接口（API）；",
                    ),
                    self.t(
                        "smart hardware that contains these products and services, such as "
                        "watches and other wearable devices.",
                        "搭载上述产品和服务的智能硬件终端，如手表等可穿戴设备。",
                    ),
                ]
            ),
            Paragraph(
                self.t(
                    "Kares comes in several versions, for iOS, Android and other systems. "
                    "Please use the version that matches your device.",
                    "Kares 包括 iOS、Android 等多个应用版本，请您在使用时选择与所安装终端设备相匹配的版本。",
                )
            ),
            Paragraph(
                self.t(
                    "This policy explains what personal information we collect when you use the "
                    "basic functions, why we collect it, what we do with it and how we protect "
                    "it. We collect and use your personal information as this policy describes, "
                    "but we do not collect all of it merely because you accept this policy: a "
                    "function's information is collected when you use that function. We comply "
                    "strictly with laws and regulations and ask for your separate consent where "
                    "they require it.",
                    "本隐私政策旨在帮助您了解您在使用基本功能服务时我们会收集哪些个人信息、"
                    "为什么收集、如何使用以及如何保护这些信息。我们会遵循本隐私政策收集、使用您的个人信息，"
                    "但不会仅因您同意本隐私政策而强制收集您的全部个人信息：某项功能所需的信息，"
                    "仅在您使用该功能时收集。我们将严格遵守法律法规的要求，在特定情形下另行征得您的单独同意。",
                )
            ),
            Paragraph(
                self.t(
                    "Under the Regulations on the Scope of Necessary Personal Information for "
                    "Common Types of Mobile Internet Applications, Kares is a practical tool, "
                    "an instant-messaging application and a map application. Its basic "
                    "functions, and the personal information each of them needs, are:",
                    "根据《常见类型移动互联网应用程序必要个人信息范围规定》，Kares "
                    "属于实用工具类、即时通信类和地图导航类应用。其基本功能服务及各自所需的个人信息如下：",
                )
            ),
            Items(
                [
                    self.fn_name(k)
                    + self.t(": ", "：")
                    + self.cats_marked(self.cat.functions[k].categories)
                    for k in basic
                ]
            ),
            Paragraph(
                self.t(
                    "Agreeing to this policy means only that you agree to our processing the "
                    "necessary personal information of the basic functions when you use them. "
                    "Sensitive personal information (marked above) is processed only after you "
                    "give your separate consent to it.",
                    "您同意本隐私政策，仅代表您同意我们在您使用 Kares "
                    "基本功能时处理相应的必要个人信息。上文标注为敏感的个人信息，"
                    "仅在您另行作出单独同意后处理。",
                )
            ),
        ]
        if extended:
            names = self.join([self.fn_name(k) for k in extended])
            blocks.append(
                Paragraph(
                    self.t(
                        f"The extended functions of Kares ({names}) ask for your consent when "
                        "you first use them.",
                        f"Kares 的扩展功能（{names}）将在您首次使用时另行征求您的同意。",
                    )
                )
            )
        return Section("intro", None, self.t("Introduction", "引言"), blocks)

    def principles(self) -> Section:
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "We understand how much your personal information matters to you, and that "
                    "protecting it well is the cornerstone of a healthy and lasting business. "
                    "Thank you for using and trusting Kares! To keep your trust we protect your "
                    "personal information by these principles:",
                    "我们深知个人信息对您的重要性，也深知为您的信息提供有效保护是我们业务健康可持续发展的基石。"
                    "感谢您对 Kares 的使用和信任！我们致力于维持您对我们的信任，恪守以下原则保护您的个人信息：",
                )
            ),
            Items(
                [
                    self.t("consistency of rights and responsibilities", "权责一致原则"),
                    self.t("clear purpose", "目的明确原则"),
                    self.t("choice and consent", "选择同意原则"),
                    self.t("minimum necessity", "最小必要原则"),
                    self.t("ensuring security", "确保安全原则"),
                    self.t("participation of the person concerned", "主体参与原则"),
                    self.t("openness and transparency", "公开透明原则"),
                ]
            ),
            Paragraph(
                self.t(
                    "We protect your personal information with security measures that follow "
                    "mature industry standards (see 4.2).",
                    "我们郑重承诺，我们将按照业界成熟的安全标准，采取相应的安全保护措施来保护您的个人信息（见 4.2）。",
                )
            ),
            Paragraph(
                self.t(
                    "Openness in practice: this policy is generated from the machine-readable "
                    "catalog that the Kares software itself enforces, so the text and what the "
                    f"software does cannot disagree (catalog version {self.p.version}, digest "
                    f"{self.digest[:16]}). The same policy is published as JSON at "
                    "/api/v1/privacy/policy, and the data map at /api/v1/privacy/data-map.",
                    "公开透明的落实：本政策由 Kares 软件自身执行的机器可读目录生成，"
                    "因此政策文本与软件的实际行为不会不一致（目录版本 "
                    f"{self.p.version}，摘要 {self.digest[:16]}）。"
                    "本政策同时以 JSON 格式发布于 /api/v1/privacy/policy，数据清单发布于 "
                    "/api/v1/privacy/data-map。",
                )
            ),
            *self.cards_for("Openness"),
        ]
        return Section("principles", None, self.t("Our Principles", "我们的原则"), blocks)

    # --- 1 -------------------------------------------------------------------------

    def s1(self, other: list[str]) -> Section:
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "We collect and use your personal information lawfully, legitimately and "
                    "only as far as necessary. If you give us someone else's personal "
                    "information, for example when you invite a family member, please make sure "
                    "that person has authorised you to do so. We reserve the right to verify at "
                    "any time that such information comes from a legitimate source.",
                    "我们会遵循合法、正当、必要的原则收集和使用您的个人信息。如果您提供他人的个人信息"
                    "（例如邀请家庭成员时），请确保您已取得相关主体的授权。我们保留随时核实该等个人信息合法来源的权利。",
                )
            ),
            Paragraph(
                self.t(
                    "For your convenience, each business function is listed below with its "
                    "purpose, its legal basis and the personal information it needs, together "
                    "with how long each kind of information is kept. The functions of this "
                    "section are listed here; the others are in the subsections they belong to.",
                    "为方便您了解，我们在下文列出各项业务功能及其处理目的、合法性基础、所需的个人信息"
                    "以及各类信息的保存期限。属于本节的功能列于此处，其他功能列于其所属的小节。",
                )
            ),
            *self.cards_for("1"),
            *[self.card(k) for k in other],
        ]
        return self.top(
            "1",
            blocks,
            [self.s1_1(), self.s1_2(), self.s1_3(), self.s1_4(), self.s1_5(), self.s1_6()],
        )

    def s1_1(self) -> Section:
        return self.sub(
            "1.1",
            "Registration and Account Login",
            "注册与账号登录",
            [
                Paragraph(
                    self.t(
                        "You can create a Kares account with your phone number and then complete "
                        "your account information.",
                        "您可以使用手机号码创建 Kares 账号，并可以完善账号信息。",
                    )
                ),
                Paragraph(
                    self.t(
                        "To register and sign in to a Kares account you give us your phone "
                        "number, and we send a one-time code to it by SMS. You can choose to set "
                        "an account name, an avatar and a login password.",
                        "注册、登录 Kares 账号时，您需要向我们提供手机号码，我们会通过短信向该号码发送一次性验证码。"
                        "您可以选择设置账号名称、头像和登录密码。",
                    )
                ),
                Paragraph(
                    self.t(
                        "You can also sign in to Kares with a third-party account such as WeChat "
                        "or an Apple ID (Apple ID for iOS users only). You then authorise Kares to "
                        "obtain the public information of that account: your nickname, avatar "
                        "and any other information you authorise. We keep the identifier that "
                        "links the account and, where you authorised them, its nickname and "
                        "avatar.",
                        "您也可以使用第三方账号（如微信、Apple ID（仅限 iOS 用户））登录 Kares。"
                        "此时您将授权 Kares 获取您在第三方账号注册的公开信息（包括昵称、头像以及您授权的其他信息）。"
                        "我们会保存关联该账号的标识，以及经您授权的昵称和头像。",
                    )
                ),
                *self.cards_for("1.1"),
            ],
        )

    def s1_2(self) -> Section:
        used = []
        for fkey, f in self.cat.functions.items():
            for name, feat in f.features.items():
                if {"camera", "photos"} & {*feat.permissions, *feat.any_permission}:
                    used.append(
                        self.feature_label(fkey, name)
                        + self.t(": ", "：")
                        + self.feature_permissions(feat)
                    )
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "When you use a camera-related service, such as scanning a code or taking or "
                    "choosing a photo, we ask for your device's camera permission and its photo "
                    "album (storage) permission, as the service needs.",
                    "当您使用相机相关服务时，基于服务需要，我们会申请您设备系统的相机权限和相册存储权限，"
                    "以提供扫码、拍摄或选择照片等服务。",
                )
            ),
            Paragraph(
                self.t(
                    "In the app, the camera button next to the Kares search box opens the camera "
                    "page, where you can learn more about these services.",
                    "您可以点击 Kares 搜索框旁的相机按钮进入相机功能页面，进一步了解相关功能服务。",
                )
            ),
        ]
        if used:
            blocks.append(
                Paragraph(
                    self.t(
                        "These features use the camera or photos:",
                        "以下功能会使用相机或相册权限：",
                    )
                )
            )
            blocks.append(Items(used))
        blocks += [
            Paragraph(
                self.t(
                    "You can withdraw Kares's access to the camera or photos in your system "
                    "settings at any time. The features that need it then stop working, but "
                    "every other function of Kares that does not need these permissions keeps "
                    "working.",
                    "您可以随时在系统设置中取消 Kares 访问相机或相册的授权。取消后，依赖上述权限的功能将无法使用，"
                    "但不影响您正常使用 Kares 不需要上述权限的其他业务功能。",
                )
            ),
            Paragraph(
                self.t(
                    "Pictures you upload are re-encoded before we store them, which removes "
                    "metadata embedded in the file, such as the GPS position a camera may have "
                    "written into it; only the re-encoded picture is kept.",
                    "您上传的图片在保存前会被重新编码，从而去除文件中嵌入的元数据（如相机可能写入的 GPS 位置）；"
                    "我们只保存重新编码后的图片。",
                )
            ),
            *self.cards_for("1.2"),
        ]
        return self.sub("1.2", "Camera Services", "相机服务", blocks)

    def s1_3(self) -> Section:
        basic = [
            self.fn_name(k)
            for k, f in self.cat.functions.items()
            if f.section == "1.3" and f.kind == "basic"
        ]
        extended = [
            self.fn_name(k)
            for k, f in self.cat.functions.items()
            if f.section == "1.3" and f.kind == "extended"
        ]
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "Kares provides location-related services based on location information, "
                    "including route records, trajectory recording and travel recommendations.",
                    "Kares 基于位置信息提供位置相关服务，包括路线记录、轨迹记录和出行推荐。",
                )
            )
        ]
        if basic or extended:
            text = []
            if basic:
                text.append(
                    self.t(
                        f"Basic functions: {self.join(basic)}.", f"基本功能：{self.join(basic)}。"
                    )
                )
            if extended:
                text.append(
                    self.t(
                        f"Extended functions, which ask for your consent first: "
                        f"{self.join(extended)}.",
                        f"扩展功能（需先征得您的同意）：{self.join(extended)}。",
                    )
                )
            blocks.append(Paragraph(" ".join(text) if self.lang == "en" else "".join(text)))
        blocks.append(
            Paragraph(
                self.t(
                    "When you use these services we may collect and process information about "
                    "your device (such as the device type), location information and network "
                    "identity information. Location information includes precise location "
                    "obtained through GPS, WLAN access points, Bluetooth and cell towers. For the "
                    "functions that need it, we ask for the precise location permission. You can "
                    "refuse it, or withdraw it in the system at any time, to stop our collection "
                    "of your precise location; functions based on precise location may then not "
                    "work, or not work as intended.",
                    "当您使用上述服务时，我们可能会收集和处理您的设备信息（如设备类型）、位置信息和网络身份标识信息。"
                    "位置信息包括通过 GPS、WLAN 接入点、蓝牙和基站获取的精确位置信息。"
                    "当您使用需要精确位置的功能时，我们会申请精确地理位置权限。您可以拒绝授权，"
                    "或随时在系统中取消 Kares 获取您精确位置信息的授权，以停止我们对您精确地理位置信息的收集；"
                    "此后您可能无法使用基于精确位置信息提供的功能，或无法达到预期效果。",
                )
            )
        )
        for key, c in self.cat.categories.items():
            if c.fallback is None:
                continue
            fb = self.cat.categories[c.fallback]
            name, fb_name = self.cat_name(key), self.cat_inline(c.fallback)
            note = self.t(
                f"{name} is sensitive personal information: we process it only with your "
                f"separate consent, which you can withdraw at any time. Without that consent, "
                f"or when the device allows only approximate location, we keep and show only "
                f"{fb_name}.",
                f"{name}属于敏感个人信息：我们仅在取得您的单独同意后处理，您可以随时撤回该同意。"
                f"未取得该同意，或设备仅允许获取大致位置时，我们仅保存和展示{fb_name}。",
            )
            if fb.rounding_decimals is not None:
                d = fb.rounding_decimals
                km = 111.32 * 10.0 ** (-d)
                size = f"{km:.1f} km" if km >= 1 else f"{round(km * 1000)} m"
                note += self.t(
                    f" Coordinates are then rounded to {d} decimal places of a degree "
                    f"(about {size}) before they are stored or shown.",
                    f"此时坐标在保存或展示前会被舍入到小数点后 {d} 位（约 {size}）。",
                )
            blocks.append(Paragraph(note))
        blocks += self.cards_for("1.3")
        return self.sub("1.3", "Location-Related Services", "位置相关服务", blocks)

    def s1_4(self) -> Section:
        cats: list[str] = []
        for f in self.cat.functions.values():
            if f.section == "1.4":
                cats += [c for c in f.categories if c not in cats]
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "When you use Kares we collect device information and information about "
                    "your login environment, so that you can use Kares normally; so that we can "
                    "find and solve the problems you meet more precisely and improve and optimise "
                    "the service; and to keep your account secure and to prevent, detect and "
                    "investigate fraud, security threats and acts that break the law or our "
                    "agreements, policies or rules, protecting the legitimate rights and "
                    "interests of you, us, our affiliates, partners and the public. This "
                    "information is:",
                    "当您使用 Kares 时，为保障您正常使用 Kares 服务，更准确地定位并解决您在使用过程中遇到的问题，"
                    "改进和优化 Kares 的服务体验，保障您的账号安全，预防、发现、调查欺诈、安全威胁、"
                    "违法或违反我们协议、政策或规则的行为，以保护您、我们、我们的关联方、合作伙伴及社会公众的合法权益，"
                    "我们会收集您的设备信息和与登录环境相关的信息，包括：",
                )
            ),
            Items([self.cat_name(c) for c in cats]),
            Paragraph(
                self.t(
                    "Device identifiers are the identifier for vendors on iOS (IDFV) and the "
                    "open anonymous device identifier on Android (OAID).",
                    "设备标识符是指 iOS 上的供应商标识符（IDFV）和 Android 上的匿名设备标识符（OAID）。",
                )
            ),
            Paragraph(
                self.t(
                    "WLAN information: the Wi-Fi access points your phone or watch reports near "
                    "you are used only to find your location, and are kept as precise location "
                    "information, with its separate consent and its retention period (see 1.3). "
                    "We do not record the Wi-Fi network you are connected to.",
                    "WLAN 信息：您的手机或手表上报的附近 Wi-Fi 接入点仅用于确定您的位置，并作为精确位置信息保存，"
                    "适用其单独同意和保存期限（见 1.3）。我们不记录您所连接的 Wi-Fi 网络。",
                )
            ),
            Paragraph(
                self.t(
                    "Please understand that when you switch Kares to the background, on some "
                    "device models and systems a collection started while you were using a "
                    "Kares function may not stop at once, so collection may briefly continue in "
                    "the background.",
                    "请您理解，当您将 Kares 切换到设备后台运行时，由于部分机型及系统原因，"
                    "您此前使用 Kares 相关功能而产生的信息收集行为可能无法立即停止，从而导致短暂的后台信息收集行为。",
                )
            ),
            *self.cards_for("1.4"),
        ]
        return self.sub(
            "1.4",
            "Ensure Service Safety, Optimize and Improve Service Purposes",
            "保障服务安全、优化和改进服务",
            blocks,
        )

    def s1_5(self) -> Section:
        return self.sub(
            "1.5",
            "Exceptions to Prior Authorization Consent",
            "征得授权同意的例外",
            [
                Paragraph(
                    self.t(
                        "Please note: in the following cases, collecting and using personal "
                        "information does not require your prior consent (Personal Information "
                        "Protection Law, Article 13):",
                        "请您注意，在以下情形中，收集、使用个人信息无需事先征得您的授权同意"
                        "（《个人信息保护法》第13条）：",
                    )
                ),
                Items(self.no_consent_bases()),
                Paragraph(
                    self.t(
                        "The legal basis of each function is given with the function. Whatever "
                        "a function's basis, sensitive personal information is processed only "
                        "with your separate consent.",
                        "各项功能所依据的合法性基础见该功能的说明。无论功能依据何种合法性基础，"
                        "敏感个人信息均仅在取得您的单独同意后处理。",
                    )
                ),
                *self.cards_for("1.5"),
            ],
        )

    def s1_6(self) -> Section:
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "Anonymised information has been processed so that it cannot identify a "
                    "specific person and cannot be restored; it is no longer personal "
                    "information. Without publicly disclosing your personal information or "
                    "providing it to anyone, we may mine, analyse and use the anonymised user "
                    "database, including commercially, compile statistics on the use of our "
                    "products and services, and share anonymised statistics with the public or "
                    "third parties.",
                    "匿名化信息是指经过处理无法识别特定自然人且不能复原的信息，不属于个人信息。"
                    "在不公开披露、不对外提供您个人信息的前提下，我们有权对匿名化处理后的用户数据库进行挖掘、"
                    "分析和利用（包括商业性使用），有权对产品/服务的使用情况进行统计，"
                    "并与公众/第三方共享匿名化的统计信息。",
                )
            )
        ]
        anon = [
            self.cat_name(k)
            for k, c in self.cat.categories.items()
            if c.retention.then == "anonymise"
        ]
        if anon:
            blocks.append(
                Paragraph(
                    self.t(
                        f"When its retention period ends, the following is anonymised rather "
                        f"than deleted: {self.join(anon)}.",
                        f"以下信息在保存期限届满后进行匿名化处理而非删除：{self.join(anon)}。",
                    )
                )
            )
        blocks += self.cards_for("1.6")
        sec = self.sub(
            "1.6", "Anonymization of Personal Information", "个人信息的匿名化处理", blocks
        )
        sec.sections = [self.s1_6_1(), self.s1_6_2()]
        return sec

    def s1_6_1(self) -> Section:
        rows = []
        for key, p in self.cat.permissions.items():
            stops = self.stops(key)
            rows.append(
                [
                    self.tx(p.name),
                    self.tx(p.business),
                    self.tx(p.method),
                    self.yes_no(p.closable),
                    self.t("; ", "；").join(stops)
                    if stops
                    else self.t(
                        "No function described in this policy depends on it",
                        "本政策所述功能均不依赖此权限",
                    ),
                ]
            )
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "While providing the service, and so that you can use its functions "
                    "normally, we apply for the following system permissions of your device. We "
                    'ask for your consent before applying: you choose to "allow" or '
                    '"prohibit" each application, and we enable a permission only after you '
                    "authorise it. You can cancel the authorisation in the system at any time; "
                    "you then cannot use the business functions that need it, but every other "
                    "function of Kares that does not need it keeps working. The last column "
                    "says exactly what stops when a permission is closed. How each business "
                    "function calls system privacy permissions:",
                    "在提供服务的过程中，为保证您能正常使用产品功能，我们会向系统申请您设备的以下系统权限。"
                    "申请前我们会征询您的同意，您可以选择“允许”或“禁止”权限申请。经过您的授权后，我们会开启相关权限；"
                    "您可以随时在系统中取消授权。取消授权会导致您无法使用相关的业务功能，"
                    "但不会影响您正常使用 Kares 不需要该权限的其他业务功能。最后一列列明了关闭各项权限后停止的功能。"
                    "各项业务功能对系统隐私权限的调用情况如下：",
                )
            ),
            Table(
                "permissions",
                [
                    self.t("Device Permission", "设备权限"),
                    self.t("Business Function", "对应业务功能"),
                    self.t("Permission Authorization Method", "权限授权方式"),
                    self.t("Is it Closable?", "是否可关闭"),
                    self.t("Closing It Stops", "关闭后停止的功能"),
                ],
                rows,
            ),
        ]
        states = []
        for p in self.cat.permissions.values():
            extra = [s for s in p.states if s not in ("granted", "denied")]
            for s in extra:
                if s == "approximate":
                    states.append(
                        self.t(
                            f"{self.tx(p.name)}: besides allowing or denying it, you can allow "
                            "only approximate location (for example by turning off Precise "
                            "Location on iOS, or allowing only approximate location on "
                            "Android); Kares then keeps and shows only approximate location.",
                            f"{self.tx(p.name)}：除允许或禁止外，您还可以仅允许获取大致位置"
                            "（例如在 iOS 上关闭“精确位置”，或在 Android 上仅允许大致位置），"
                            "此时 Kares 仅保存和展示大致位置。",
                        )
                    )
                else:
                    states.append(
                        self.t(
                            f'{self.tx(p.name)}: can also be in the state "{s}".',
                            f"{self.tx(p.name)}：还可以处于“{s}”状态。",
                        )
                    )
        if states:
            blocks.append(Items(states))
        blocks.append(
            Paragraph(
                self.t(
                    "You can review the permissions and close them in Kares under [My] - "
                    "[Settings] - [Permission Settings]. How permissions are shown and closed "
                    "may differ between devices; please refer to the instructions or guidelines "
                    "of your device and system developer.",
                    "您可以在【Kares】的【我的】-【设置】-【权限设置】中查看隐私权限详情并关闭相应权限。"
                    "不同设备中权限的显示方式及关闭方式可能有所不同，请参考设备及系统开发方的说明或指引。",
                )
            )
        )
        blocks += self.cards_for("1.6.1")
        return self.sub("1.6.1", "Device Permission Calls", "设备权限调用", blocks)

    def s1_6_2(self) -> Section:
        rows = [
            [
                sdk.name,
                self.tx(sdk.purpose),
                self.join([self.perm_name(p) for p in sdk.permissions]) or self.t("None", "无"),
            ]
            for sdk in self.cat.sdks.values()
        ]
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "The Kares apps include the third-party SDKs below. An SDK can use only the "
                    "device permissions listed for it, and only those you have allowed Kares; "
                    "who provides each SDK and what it collects is in 3.5.",
                    "Kares 应用集成了以下第三方 SDK。各 SDK 仅可使用下表所列、且您已授权 Kares 的设备权限；"
                    "各 SDK 的提供方及其收集的信息见 3.5。",
                )
            ),
            Table(
                "sdk-permissions",
                [
                    self.t("SDK", "SDK 名称"),
                    self.t("Purpose", "使用目的"),
                    self.t("Device permissions it may use", "可能调用的设备权限"),
                ],
                rows,
            ),
            *self.cards_for("1.6.2"),
        ]
        return self.sub("1.6.2", "SDK Usage", "SDK 使用情况", blocks)

    # --- 2 cookies ---------------------------------------------------------------------

    def cookie_kind(self, kind: str) -> str:
        return {
            "strictly_necessary": self.t("Strictly necessary", "严格必要"),
            "preferences": self.t("Preferences", "偏好设置"),
            "analytics": self.t("Analytics", "统计分析"),
        }.get(kind, kind)

    def s2(self) -> Section:
        rows = []
        for name, c in self.cat.cookies.items():
            if c.first_party:
                by = self.t("Kares (first party)", "Kares（第一方）")
            else:
                tp = self.cat.third_parties.get(c.third_party or "")
                tp_name = self.tx(tp.name) if tp else (c.third_party or "")
                by = self.t(f"{tp_name} (third party)", f"{tp_name}（第三方）")
            rows.append(
                [
                    name,
                    self.cookie_kind(c.kind),
                    self.tx(c.purpose),
                    self.t(f"{c.expires_days} days", f"{c.expires_days} 天")
                    if c.expires_days
                    else self.t("When you close the browser", "关闭浏览器时"),
                    self.yes_no(c.http_only),
                    by,
                ]
            )
        third = [
            self.tx(self.cat.third_parties[c.third_party].name)
            for c in self.cat.cookies.values()
            if c.third_party and c.third_party in self.cat.third_parties
        ]
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "Cookies and anonymous identifiers: a cookie is a mechanism that lets a "
                    "server (or a script) store information on your device and read it back. "
                    "When you use Kares products or services we send one or more cookies or "
                    "anonymous identifiers to your device; cookies usually contain an "
                    "identifier, the site name and some numbers and characters. We use them to "
                    "keep you signed in and your account secure, to remember your preferences "
                    "so you do not have to enter them again and, where the table says so, to "
                    "count traffic.",
                    "Cookie 和匿名标识符工具：Cookie 是一种支持服务器端（或脚本）在客户端上存储和检索信息的机制。"
                    "当您使用 Kares 产品或服务时，我们会向您的设备发送一个或多个 Cookie 或匿名标识符。"
                    "Cookie 通常包含标识符、站点名称以及一些号码和字符。我们借助 Cookie 保持您的登录状态并帮助判断账号安全，"
                    "记住您的偏好以免您重复输入，并在下表注明的情况下统计流量信息。",
                )
            ),
        ]
        if third:
            blocks.append(
                Paragraph(
                    self.t(
                        f"When you interact with Kares services, a cookie or anonymous "
                        f"identifier may be sent to the servers of {self.join(third)}, only as "
                        "the table below says.",
                        f"当您与 Kares 服务交互时，Cookie 或匿名标识符可能会被发送至{self.join(third)}"
                        "的服务器，具体以下表所列为准。",
                    )
                )
            )
        blocks += [
            Paragraph(
                self.t("These are the only cookies Kares sets:", "Kares 仅会设置以下 Cookie：")
            ),
            Table(
                "cookies",
                [
                    self.t("Cookie", "Cookie 名称"),
                    self.t("Type", "类型"),
                    self.t("Purpose", "用途"),
                    self.t("Expires after", "有效期"),
                    self.t(
                        "HttpOnly (not readable by page scripts)", "HttpOnly（页面脚本无法读取）"
                    ),
                    self.t("Set by", "设置方"),
                ],
                rows,
            ),
            Paragraph(
                self.t(
                    "We do not use cookies for any purpose other than those described in this "
                    "policy. You can manage or delete cookies as you prefer; for details see "
                    "AboutCookies.org (https://www.aboutcookies.org). You can clear all cookies "
                    "stored on your computer, and most web browsers can block cookies. If you "
                    "do, you may have to change your settings by hand each time you visit our "
                    "website, and you may not be able to sign in or to use the services or "
                    "functions of Kares that rely on cookies.",
                    "我们不会将 Cookie 用于本政策所述目的之外的任何用途。您可根据自己的偏好管理或删除 Cookie，"
                    "详情请参见 AboutCookies.org（https://www.aboutcookies.org）。"
                    "您可以清除计算机上保存的所有 Cookie，大部分网络浏览器都设有阻止 Cookie 的功能。"
                    "但如果您这么做，则需要在每一次访问我们的网站时亲自更改用户设置，"
                    "并且可能无法登录或使用依赖于 Cookie 的 Kares 服务或功能。",
                )
            ),
        ]
        return self.top("2", blocks, [])

    # --- 3 sharing ---------------------------------------------------------------------

    def tp_table(self, tid: str, relation: str) -> Table:
        rows = [
            [
                self.tx(tp.name),
                self.tx(tp.purpose),
                self.join([self.cat_name(c) for c in tp.categories])
                or self.t("No personal information", "不涉及个人信息"),
            ]
            for tp in self.cat.third_parties.values()
            if tp.relation == relation
        ]
        return Table(
            tid,
            [
                self.t("Third party", "第三方"),
                self.t("Purpose", "目的"),
                self.t("Personal information", "个人信息"),
            ],
            rows,
        )

    def s3(self) -> Section:
        op = self.tx(self.p.operator)
        sharing = [tp for tp in self.cat.third_parties.values() if tp.relation == "sharing"]
        entrusted = [tp for tp in self.cat.third_parties.values() if tp.relation == "entrusted"]
        s31: list[Block] = [
            Paragraph(
                self.t(
                    "Unless you have given your prior separate consent, or laws and regulations "
                    "provide otherwise, we do not share your personal information with third "
                    "parties outside our company, except information that has been processed so "
                    "that it cannot identify a specific person and cannot be restored.",
                    "除非获得您的事先单独同意或符合其他法律法规的规定，我们不会与本公司以外的第三方共享您的个人信息，"
                    "但经过处理无法识别特定个人且不能复原的信息除外。",
                )
            ),
            Paragraph(
                self.t(
                    "Before we share personal information with a company, organisation or "
                    "individual, we examine its data-security environment, sign a strict "
                    "confidentiality agreement with it, and require it to handle the "
                    "information with the confidentiality and security measures the law "
                    "requires.",
                    "对我们与之共享个人信息的公司、组织和个人，我们会对其数据安全环境进行调查，"
                    "与其签署严格的保密协定，要求其按照法律规定的保密和安全措施处理个人信息。",
                )
            ),
        ]
        if sharing:
            s31 += [
                Paragraph(
                    self.t(
                        "We may share your personal information with the following third parties:",
                        "我们可能会与以下第三方共享您的个人信息：",
                    )
                ),
                self.tp_table("third-parties-sharing", "sharing"),
            ]
        else:
            s31.append(
                Paragraph(
                    self.t(
                        "We currently share personal information with no third party.",
                        "目前我们不与任何第三方共享个人信息。",
                    )
                )
            )
        if entrusted:
            s31 += [
                Paragraph(
                    self.t(
                        "Entrusted processing: we entrust the processing of some personal "
                        "information to the service providers below. They process it only on "
                        "our behalf, for the purpose stated, under a contract that binds them to "
                        "our instructions and to protecting it; they may not use it for any "
                        "other purpose.",
                        "委托处理：我们会委托以下服务提供者处理部分个人信息。"
                        "其仅可代表我们、为下表所述目的处理，并受合同约束，须按照我们的要求处理并保护相关信息，"
                        "不得用于其他任何目的。",
                    )
                ),
                self.tp_table("third-parties-entrusted", "entrusted"),
            ]
        subs = [
            self.sub("3.1", "Sharing", "共享", s31),
            self.sub(
                "3.1.1",
                "Third-Party Product or Service Providers",
                "第三方产品或服务提供者",
                [
                    Paragraph(
                        self.t(
                            "Kares integrates third-party services, including third-party "
                            "mini-programs. When you use one of them you may need to submit your "
                            "personal information to it. We provide your personal information to "
                            "a third party that serves you only on the basis of your valid "
                            "authorisation, or where it is necessary to conclude or perform a "
                            "contract to which you are a party. How a third-party service "
                            "collects and uses your personal information is set out in its own "
                            "service agreement and privacy policy, which we recommend you read.",
                            "Kares 接入了丰富的第三方服务（包括第三方小程序）。当您使用 Kares "
                            "接入的第三方服务时，可能需要提交您的个人信息。我们会基于您的有效授权，"
                            "或在订立、履行您作为一方当事人的合同所必需的情况下，将您的个人信息提供给为您提供服务的第三方。"
                            "关于第三方服务具体如何收集、使用您的个人信息，建议您参考第三方服务的相关服务协议及隐私政策。",
                        )
                    )
                ],
            ),
            self.sub(
                "3.2",
                "Transfer",
                "转让",
                [
                    Paragraph(
                        self.t(
                            "We do not transfer your personal information to any company, "
                            f"organisation or individual other than {op}, except:",
                            f"我们不会将您的个人信息转让给{op}以外的任何公司、组织和个人，但以下情况除外：",
                        )
                    ),
                    Items(
                        [
                            self.t("with your separate consent;", "事先获得您的单独同意；"),
                            self.t(
                                "when personal information must be transferred because of a "
                                "merger, division, dissolution or declaration of bankruptcy: we "
                                "will tell you the name and contact details of the recipient, "
                                "and the recipient must continue to meet the obligations of this "
                                "policy; if it changes the original purpose or means of "
                                "processing, it must ask for your consent again (PIPL Article "
                                "22);",
                                "因合并、分立、解散、被宣告破产等原因需要转移个人信息的，我们会向您告知接收方的名称和联系方式，"
                                "接收方应当继续履行本政策规定的义务；接收方变更原先的处理目的、处理方式的，"
                                "应当重新取得您的同意（《个人信息保护法》第22条）；",
                            ),
                            self.t("in the cases listed in 3.4.", "3.4 所列的情形。"),
                        ]
                    ),
                ],
            ),
            self.sub(
                "3.3",
                "Public Disclosure",
                "公开披露",
                [
                    Paragraph(
                        self.t(
                            "We publicly disclose your personal information only:",
                            "我们仅会在以下情况下公开披露您的个人信息：",
                        )
                    ),
                    Items(
                        [
                            self.t("with your separate consent;", "获得您的单独同意后；"),
                            self.t(
                                "when we penalise an account or behaviour that breaks the law or "
                                "our rules: the notice then discloses the relevant account "
                                "information, which necessarily includes information identifying "
                                "the account and the circumstances of the violation, and only as "
                                "much as the notice needs.",
                                "在对违规账号或行为进行处罚时，我们会披露相关账号信息，不可避免地包括账号相关的认证信息及违规情况，"
                                "且以公告所必需的范围为限。",
                            ),
                        ]
                    ),
                ],
            ),
            self.sub(
                "3.4",
                "Exceptions to Prior Authorization Consent for Sharing, Transferring, and "
                "Publicly Disclosing Personal Information",
                "共享、转让、公开披露个人信息时事先征得授权同意的例外",
                [
                    Paragraph(
                        self.t(
                            "In the following cases, sharing, transferring and publicly "
                            "disclosing personal information do not require the prior consent "
                            "of the person it concerns:",
                            "以下情形中，共享、转让、公开披露个人信息无需事先征得个人信息主体的授权同意：",
                        )
                    ),
                    Items(self.no_consent_bases()),
                ],
            ),
            self.s3_5(),
        ]
        return self.top("3", [], subs)

    def s3_5(self) -> Section:
        rows = [
            [
                sdk.name,
                self.tx(sdk.company),
                self.tx(sdk.purpose),
                self.tx(sdk.data),
                self.join([self.perm_name(p) for p in sdk.permissions]) or self.t("None", "无"),
                sdk.privacy_url,
            ]
            for sdk in self.cat.sdks.values()
        ]
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "To adapt Kares to different mobile devices and third-party platforms, to "
                    "authenticate your device and keep it secure, to deliver notifications, to "
                    "let you sign in with a third-party platform account and to share through "
                    "third-party platforms, Kares integrates third-party SDKs. Some of them may "
                    "call your device permissions and obtain information so that the function "
                    "works on your device or platform; which permissions and which information "
                    "differs from SDK to SDK and is listed below.",
                    "为适配 Kares 在不同移动设备和第三方平台上的使用，实现您的设备身份认证和设备安全、"
                    "接收信息推送、登录第三方平台账号以及通过第三方平台分享信息，Kares 集成了第三方 SDK。"
                    "部分第三方 SDK 可能会调用您的设备权限并获取相关信息，以保障您在不同设备或第三方平台上正常使用相应功能；"
                    "不同 SDK 调用的权限类型和获取的信息各不相同，详见下表。",
                )
            ),
            Table(
                "sdks",
                [
                    self.t("SDK", "SDK 名称"),
                    self.t("Provider", "提供方"),
                    self.t("Purpose", "使用目的"),
                    self.t("Information collected", "收集的信息"),
                    self.t("Device permissions", "设备权限"),
                    self.t("Privacy policy", "隐私政策"),
                ],
                rows,
            ),
            Paragraph(
                self.t(
                    "An SDK can use a device permission only if you have allowed it to Kares; "
                    "when you close a permission (1.6.1), the SDKs lose it too.",
                    "SDK 仅能使用您已授权给 Kares 的设备权限；您关闭某项权限（见 1.6.1）后，SDK 也无法再使用该权限。",
                )
            ),
        ]
        return self.sub(
            "3.5",
            "Third-Party Software Development Kits (SDKs) We Access",
            "我们接入的第三方软件开发工具包（SDK）",
            blocks,
        )

    # --- 4 retention and security ------------------------------------------------------

    def s4(self) -> Section:
        rows = [
            [
                self.tx(c.name),
                self.yes_no(c.sensitive),
                self.retention_short(c.retention),
                self.then_word(c.retention).capitalize(),
            ]
            for c in self.cat.categories.values()
        ]
        encrypted: list[str] = []
        for r in self.rows:
            if r.encrypted and self.cat_name(r.category) not in encrypted:
                encrypted.append(self.cat_name(r.category))
        crypto = self.t(
            "We use encryption to keep data confidential. ",
            "我们使用加密技术确保数据的保密性。",
        )
        if encrypted:
            crypto += self.t(
                f"Stored encrypted at rest with AES-256-GCM: {self.join(encrypted)}. Each "
                "encrypted value is bound to the place where it is stored, and our keys carry "
                "identifiers so that they can be rotated without losing older data. ",
                f"以 AES-256-GCM 加密存储的信息：{self.join(encrypted)}。每个加密值均与其存储位置绑定，"
                "密钥带有标识，可在不丢失旧数据的情况下轮换。",
            )
        crypto += self.t(
            "We never store your login password itself, only a one-way hash of it. We use "
            "trusted protection mechanisms to guard data against malicious attacks.",
            "我们从不保存您的登录密码本身，只保存其单向散列值。我们会使用受信赖的保护机制防止数据遭到恶意攻击。",
        )
        s41 = self.sub(
            "4.1",
            "Retention Period",
            "保存期限",
            [
                Paragraph(
                    self.t(
                        "We keep your personal information only for as long as necessary to "
                        "provide the service. The period for each kind of personal information:",
                        "我们仅在为提供服务所必需的期间内保留您的个人信息。各类个人信息的保存期限如下：",
                    )
                ),
                Table(
                    "retention",
                    [
                        self.t("Personal information", "个人信息"),
                        self.t("Sensitive", "是否敏感"),
                        self.t("Kept", "保存期限"),
                        self.t("Then", "到期后"),
                    ],
                    rows,
                ),
                Paragraph(
                    self.t(
                        "We keep information for longer only within a reasonable range and as "
                        "laws or contracts require: where laws and regulations set a different "
                        "retention period, where you have agreed to a longer period, to ensure "
                        "the security and quality of the service, to resolve a dispute, or "
                        "where it is technically difficult to do otherwise.",
                        "但在法律法规对保存期限另有规定、您同意留存更长期限、为保证服务的安全与质量、"
                        "为实现争议解决目的或技术上难以实现等情况下，我们将依据法律规定或合同约定，"
                        "在合理范围内延长保存期限。",
                    )
                ),
                Paragraph(
                    self.t(
                        "When the retention period ends we delete your personal information or "
                        "anonymise it, as the table says and the law requires.",
                        "超出保存期限后，我们将按照上表及法律要求删除您的个人信息或对其进行匿名化处理。",
                    )
                ),
            ],
        )
        s42 = self.sub(
            "4.2",
            "Security Measures",
            "安全措施",
            [
                Paragraph(
                    self.t(
                        "We collect, use, store and transmit user information on the principle "
                        "of minimisation, and tell you the purpose and scope of its use in our "
                        "user agreement and this privacy policy.",
                        "我们会本着“最小化”原则收集、使用、存储和传输用户信息，"
                        "并通过用户协议和隐私政策告知您相关信息的使用目的和范围。",
                    )
                ),
                Paragraph(
                    self.t(
                        "We take information security seriously. We run security background "
                        "checks on security managers and staff in key security positions, and "
                        "we have a comprehensive information-security management system and an "
                        "internal procedure for handling security incidents. We store and "
                        "protect your personal information with appropriate industry-standard "
                        "security measures and technical means, and take all reasonable and "
                        "practicable steps to prevent its loss, unauthorised access, public "
                        "disclosure, misuse, damage or leakage.",
                        "我们非常重视信息安全。我们会对安全管理负责人和关键安全岗位的人员进行安全背景审查，"
                        "建立了完善的信息安全管理制度和内部安全事件处置机制。我们会采取适当的符合业界标准的安全措施和技术手段"
                        "存储和保护您的个人信息，并采取一切合理可行的措施，防止您的信息遗失、遭受未经授权的访问、公开披露、"
                        "使用、毁损、丢失或泄漏。",
                    )
                ),
                Paragraph(crypto),
                Paragraph(
                    self.t(
                        "We build data-security awareness among our staff and train and assess "
                        "their security skills. We authenticate the staff who process personal "
                        "information and control what each may do; staff and partners who can "
                        "reach your personal information sign confidentiality agreements that "
                        "set out their duties and rules of conduct, so that only authorised "
                        "people can access it. A breach of confidentiality ends the working "
                        "relationship at once and we pursue the legal liability. Confidentiality "
                        "duties continue after people who handled personal information leave.",
                        "我们会培养员工的数据安全意识，对员工进行安全能力培训和考核，加强员工对于保护个人信息重要性的认识。"
                        "我们会对处理个人信息的员工进行身份认证及权限控制，并与接触您个人信息的员工、合作伙伴签署保密协议，"
                        "明确岗位职责及行为准则，确保只有授权人员才可访问个人信息。若有违反保密协议的行为，"
                        "会被立即终止与公司的合作关系，并会被追究相关法律责任。对接触个人信息的人员在离岗时也提出了保密要求。",
                    )
                ),
                Paragraph(
                    self.t(
                        "Please remember that the internet is not an absolutely secure "
                        "environment. When you communicate with other users through SMS or other "
                        "third-party software from within Kares, we cannot be sure that the "
                        "third-party software encrypts the whole transmission; please take care "
                        "of your personal information.",
                        "我们提醒您注意，互联网并非绝对安全的环境。当您通过 Kares 中嵌入的短信等第三方软件与其他用户交互时，"
                        "无法确定第三方软件是否对信息传输进行了完整加密，请您注意确保个人信息的安全。",
                    )
                ),
                Paragraph(
                    self.t(
                        "Please understand that, because of technical limits and the fast "
                        "development of the internet and of malicious attacks, we cannot "
                        "guarantee absolute security at all times however hard we try, and that "
                        "the systems and networks you use to reach our services may have "
                        "security problems beyond our control.",
                        "请您理解，由于技术的限制以及互联网行业的快速发展和各种恶意攻击手段的存在，"
                        "即便我们竭尽所能加强安全措施，也不可能始终保证信息百分之百的安全。"
                        "您接入我们产品和/或服务所用的系统和通讯网络，有可能因我们可控范围外的因素而出现问题。",
                    )
                ),
                Paragraph(
                    self.t(
                        "Under our security management system, leakage, damage or loss of "
                        "personal information is a major security incident. If one happens we "
                        "activate our highest-level emergency plan, and a joint response team of "
                        "the security, public affairs, legal and other departments handles it.",
                        "根据我们的安全管理制度，个人信息泄露、毁损或丢失事件被列为重大安全事件，"
                        "一经发生将启动最高级别的紧急预案，由安全部、公共事务部、法务部等多个部门组成联合应急响应小组处理。",
                    )
                ),
            ],
        )
        s43 = self.sub(
            "4.3",
            "Security Incident Notification",
            "安全事件通知",
            [
                Paragraph(
                    self.t(
                        "We maintain emergency plans for network-security incidents and deal "
                        "promptly with security risks such as system vulnerabilities, computer "
                        "viruses, network attacks and intrusions. When an incident endangers "
                        "network security we activate the plan at once, take remedial measures "
                        "and report to the competent authorities as required.",
                        "我们会制定网络安全事件应急预案，及时处置系统漏洞、计算机病毒、网络攻击、网络侵入等安全风险。"
                        "在发生危害网络安全的事件时，我们会立即启动应急预案，采取相应的补救措施，并按照规定向有关主管部门报告。",
                    )
                ),
                Paragraph(
                    self.t(
                        "Leakage, damage and loss of personal information are company-level "
                        "major security incidents. We rehearse our plans regularly with the "
                        "members of the response team. If such an incident happens we activate "
                        "the plan with the highest priority, form a response team, trace the "
                        "cause as fast as possible and limit the harm.",
                        "个人信息泄露、毁损、丢失属于公司级重大安全事件，我们会定期组织工作组成员进行安全预案演练，"
                        "防止此类安全事件发生。若一旦不幸发生，我们将以最高优先级启动应急预案，组成紧急应急小组，"
                        "在最短时间内追溯原因并减少损失。",
                    )
                ),
                Paragraph(
                    self.t(
                        "If a personal-information security incident happens, we tell you "
                        "promptly, as laws and regulations require: what happened and its "
                        "possible impact, what we have done or will do, how you can protect "
                        "yourself and reduce the risk, and the remedies open to you. We tell you "
                        "by in-app notification, SMS, phone call or e-mail, using the contact "
                        "details you gave us; where we cannot reach everyone individually, we "
                        "publish an announcement in a reasonable and effective way. We also "
                        "report how we handled the incident to the regulators as required.",
                        "在不幸发生个人信息安全事件后，我们将按照法律法规的要求，及时向您告知安全事件的基本情况和可能的影响、"
                        "我们已采取或将要采取的处置措施、您可自主防范和降低风险的建议、对您的补救措施等。"
                        "我们将及时将事件相关情况以站内通知、短信、电话、邮件等方式告知您；难以逐一告知个人信息主体时，"
                        "我们会采取合理、有效的方式发布公告。同时，我们还将按照监管部门的要求，主动上报个人信息安全事件的处置情况。",
                    )
                ),
                Paragraph(
                    self.t(
                        "Where the measures we take effectively prevent harm from the leakage, "
                        "tampering or loss of information, we may decide not to notify you, "
                        "unless a regulator requires us to.",
                        "请您理解，如我们采取的措施能够有效避免信息泄露、篡改、丢失造成危害的，"
                        "除监管部门要求外，我们可以选择不通知您该个人信息安全事件。",
                    )
                ),
            ],
        )
        return self.top("4", [], [s41, s42, s43])

    # --- 5 rights ----------------------------------------------------------------------

    def s5(self) -> Section:
        days = self.p.response_working_days
        email = self.p.contact_email
        consents = [
            self.t(
                f"{self.fn_name(k)}: your consent to this extended function",
                f"{self.fn_name(k)}：您对该扩展功能的同意",
            )
            for k, f in self.cat.functions.items()
            if f.kind == "extended"
        ] + [
            self.t(
                f"{self.cat_name(k)}: your separate consent to this sensitive personal information",
                f"{self.cat_name(k)}：您对该敏感个人信息的单独同意",
            )
            for k, c in self.cat.categories.items()
            if c.sensitive
        ]
        subs = [
            self.sub(
                "5.1",
                "Right to Correction and Supplementation",
                "更正、补充权",
                [
                    Paragraph(
                        self.t(
                            "When you find that personal information we process about you is "
                            "wrong or incomplete, you have the right to have it corrected or "
                            "completed, after we have verified your identity and provided that "
                            "the correction does not harm the objectivity and accuracy of the "
                            "information. You can change your account name, avatar and password "
                            "yourself in Kares at any time; for other information, send us a "
                            "correction or supplement through feedback and error reporting.",
                            "当您发现我们处理的关于您的个人信息有错误或不完整时，在核实您的身份且更正不影响信息的客观性和准确性的前提下，"
                            "您有权对错误或不完整的信息作出更正或补充。您可以随时在 Kares 中自行修改账号名称、头像和密码；"
                            "其他信息可通过意见反馈和报错等途径向我们提交更正或补充申请。",
                        )
                    )
                ],
            ),
            self.sub(
                "5.2",
                "Right to Deletion",
                "删除权",
                [
                    Paragraph(
                        self.t(
                            "You can ask us to delete your personal information when:",
                            "在以下情形中，您可以向我们提出删除个人信息的请求：",
                        )
                    ),
                    Items(
                        [
                            self.t(
                                "the purpose of processing has been achieved or cannot be "
                                "achieved, or the information is no longer needed for it;",
                                "处理目的已实现、无法实现或者为实现处理目的不再必要；",
                            ),
                            self.t(
                                "we stop providing the product or service, or the retention "
                                "period (4.1) has ended;",
                                "我们停止提供产品或者服务，或者保存期限（见 4.1）已届满；",
                            ),
                            self.t("you withdraw your consent;", "您撤回同意；"),
                            self.t(
                                "we processed the information in breach of laws, administrative "
                                "regulations or our agreement with you;",
                                "我们违反法律、行政法规或者违反约定处理个人信息；",
                            ),
                            self.t(
                                "other cases provided by laws and administrative regulations.",
                                "法律、行政法规规定的其他情形。",
                            ),
                        ]
                    ),
                    Paragraph(
                        self.t(
                            "After you delete information from our services we may not delete "
                            "the copy in our backup systems at once, but it is deleted when the "
                            "backup is next updated. If the retention period set by laws, "
                            "administrative regulations or this policy has not ended, or "
                            "deletion is technically difficult, we stop all processing other "
                            "than storing the information and protecting it.",
                            "当您从我们的服务中删除信息后，我们可能不会立即从备份系统中删除相应的信息，但会在备份更新时删除这些信息。"
                            "请您理解，如法律、行政法规或本隐私政策规定的保存期限未届满，或者删除个人信息从技术上难以实现的，"
                            "我们将停止除存储和采取必要的安全保护措施之外的处理。",
                        )
                    ),
                ],
            ),
            self.sub(
                "5.3",
                "Right to Withdraw Consent",
                "撤回同意权",
                [
                    Paragraph(
                        self.t(
                            "Each business function needs some basic personal information. For "
                            "the collection and use of any further personal information you can "
                            "give or withdraw your consent at any time. The consents you can "
                            "give and withdraw one by one:",
                            "每个业务功能需要一些基本的个人信息才能得以完成。对于额外收集的个人信息的收集和使用，"
                            "您可以随时给予或撤回您的同意。您可以逐项给予和撤回的同意包括：",
                        )
                    ),
                    Items(consents),
                    Paragraph(
                        self.t(
                            "You can also change the scope of your consent, or withdraw it, by "
                            "turning off system permissions of your device, such as precise "
                            "location, camera, microphone or photos (see 1.6.1).",
                            "您也可以在设备系统中直接关闭精确地理位置、相机、麦克风、相册等系统权限（见 1.6.1），"
                            "以改变同意范围或撤回您的授权。",
                        )
                    ),
                    Paragraph(
                        self.t(
                            "After you withdraw a consent we can no longer provide the services "
                            "that rely on it, and we stop using the personal information it "
                            "covered. Withdrawing does not affect processing carried out on the "
                            "basis of your consent before you withdrew it.",
                            "当您撤回同意后，我们将无法继续为您提供撤回同意所对应的服务，也不再处理您相应的个人信息。"
                            "但您撤回同意的决定，不会影响此前基于您的同意而开展的个人信息处理。",
                        )
                    ),
                    *self.cards_for("5.3"),
                ],
            ),
            self.sub(
                "5.4",
                "Right to Account Deletion",
                "注销账号权",
                [
                    Paragraph(
                        self.t(
                            "You can delete your Kares account under [My] - [Settings] - "
                            "[Account Deletion].",
                            "您可以通过以下路径注销您的 Kares 账号：【我的】-【设置】-【注销账号】。",
                        )
                    ),
                    Paragraph(
                        self.t(
                            "Once your account is deleted you can no longer use Kares products "
                            "and services, so please be careful. Unless laws and regulations "
                            "provide otherwise, after deletion we stop providing products and "
                            "services to you and delete your personal information as you "
                            "asked, including everything that 4.1 says is kept while your "
                            "account exists.",
                            "注销 Kares 账号后，您将无法再使用 Kares 产品的服务，请您谨慎操作。除法律法规另有规定外，"
                            "注销账号后，我们将停止为您提供产品和服务，并根据您的要求删除您的个人信息，"
                            "包括 4.1 所述在账号存续期间保存的全部信息。",
                        )
                    ),
                    Paragraph(
                        self.t(
                            "If you signed in to Kares with a third-party account (such as "
                            "WeChat or an Apple ID), deleting that third-party account must be "
                            "requested from the third party.",
                            "如您通过第三方账号（如微信、Apple ID）授权登录 Kares，需要向第三方申请注销该账号。",
                        )
                    ),
                ],
            ),
            self.sub(
                "5.5",
                "Right to Know in Advance about the Suspension of Products and Services",
                "提前获知产品与服务停止运营的权利",
                [
                    Paragraph(
                        self.t(
                            "Kares hopes to be with you always. If Kares products stop "
                            "operating for special reasons, we will tell you within a reasonable "
                            "period through the main page of the product or service, in-app "
                            "notifications, e-mail or other appropriate means that reach you, "
                            "and we will stop collecting your personal information. We will "
                            "delete or anonymise the personal information collected, as the law "
                            "requires.",
                            "Kares 愿一直陪伴您。若因特殊原因导致 Kares 产品停止运营，我们将在合理期限内通过产品或服务的主页面、"
                            "站内通知、邮件或其他合适的能触达您的方式通知您，并停止对您个人信息的收集。"
                            "我们将按照法律要求对所收集的个人信息进行删除或匿名化处理。",
                        )
                    )
                ],
            ),
            self.sub(
                "5.6",
                "Right to Explanation",
                "解释说明权",
                [
                    Paragraph(
                        self.t(
                            "You have the right to ask us to explain the rules by which we "
                            "process personal information; contact us as described in 9 (How to "
                            "Contact Us). This policy and its data map (see the appendix) set "
                            "out what we process, for what purpose, on what legal basis, with "
                            "whom it is shared and how long it is kept.",
                            "您有权要求我们对个人信息处理规则进行解释说明，您可以通过第 9 部分（如何联系我们）中的联系方式与我们联系。"
                            "本政策及其数据清单（见附录）列明了我们处理哪些信息、处理目的、合法性基础、与谁共享以及保存多久。",
                        )
                    )
                ],
            ),
            self.sub(
                "5.7",
                "Exceptions to the Exercise of Rights",
                "响应权利请求的例外",
                [
                    Paragraph(
                        self.t(
                            "We may be unable to respond to a request for access, correction, "
                            "supplementation, deletion, copying, portability, information or "
                            "decision-making in the following cases:",
                            "在以下情形中，我们可能无法响应您的查阅、更正、补充、删除、复制、转移、知情和决定请求：",
                        )
                    ),
                    Items(
                        [
                            self.t(
                                "where it concerns our fulfilment of duties under laws and "
                                "regulations;",
                                "与我们履行法律法规规定的义务相关的；",
                            ),
                            self.t(
                                "where it directly concerns national security or national defence;",
                                "与国家安全、国防安全直接相关的；",
                            ),
                            self.t(
                                "where it directly concerns public safety, public health or "
                                "major public interests;",
                                "与公共安全、公共卫生、重大公共利益直接相关的；",
                            ),
                            self.t(
                                "where it directly concerns criminal investigation, "
                                "prosecution, trial or the enforcement of judgments;",
                                "与刑事侦查、起诉、审判和执行判决等直接相关的；",
                            ),
                            self.t(
                                "where we have sufficient evidence that you act with malice or "
                                "abuse your rights;",
                                "有充分证据表明您存在主观恶意或滥用权利的；",
                            ),
                            self.t(
                                "where it is to protect the life, property or other major "
                                "legitimate rights and interests of you or others and your "
                                "consent is hard to obtain;",
                                "出于维护您或其他个人的生命、财产等重大合法权益但又很难得到本人同意的；",
                            ),
                            self.t(
                                "where responding would seriously harm the legitimate rights "
                                "and interests of you or of other people or organisations;",
                                "响应您的请求将导致您或其他个人、组织的合法权益受到严重损害的；",
                            ),
                            self.t("where trade secrets are involved.", "涉及商业秘密的。"),
                        ]
                    ),
                    Paragraph(
                        self.t(
                            "Withdrawing consent does not stop processing that relies on a "
                            "legal basis that needs no consent (see 1.5), but you can still ask "
                            "us about such processing and ask us to correct the information.",
                            "撤回同意不影响依据无需同意的合法性基础（见 1.5）进行的处理，"
                            "但您仍可以就此类处理向我们询问，并要求我们更正相关信息。",
                        )
                    ),
                ],
            ),
            self.sub(
                "5.8",
                "How to Respond to Your Rights Request",
                "如何响应您的权利请求",
                [
                    Paragraph(
                        self.t(
                            "To keep your information safe, you may need to make your request "
                            "in writing or prove your identity in another way; we may verify "
                            f"your identity before we handle the request. Once your identity is "
                            f"verified we respond within {days} working days (working days of "
                            "the Chinese calendar, which skips statutory holidays and counts "
                            "make-up working days). If you are not satisfied with our response "
                            f"you can complain to {email}.",
                            "为保障安全，您可能需要提供书面请求，或以其他方式证明您的身份。"
                            "我们可能会先要求您验证自己的身份，然后再处理您的请求。"
                            f"在验证您的身份后，我们将在 {days} 个工作日内作出答复"
                            "（按中国日历计算工作日，不含法定节假日，含调休上班日）。"
                            f"如您不满意，还可以通过以下途径投诉：{email}。",
                        )
                    ),
                    Paragraph(
                        self.t(
                            "You can also send a correction you cannot make in the app "
                            "yourself, a request for an explanation, a complaint or feedback "
                            "from the app. Each request shows the date by which we will answer "
                            "it, and you can withdraw it while it is open. A guardian can send "
                            "them for a child or a family member they look after.",
                            "您也可以在应用内提交无法自行完成的更正、解释说明请求、投诉或反馈。"
                            "每项请求都会显示我们作出答复的截止日期，在答复前您可以撤回。"
                            "监护人可以为其照顾的儿童或家庭成员提交上述请求。",
                        )
                    ),
                    Paragraph(
                        self.t(
                            "In principle we charge nothing for reasonable requests; for "
                            "repeated requests beyond a reasonable limit we may charge a fee "
                            "that covers our cost. We may refuse requests that are repeated "
                            "without reason, that need disproportionate technical means (for "
                            "example a new system or a fundamental change to current practice), "
                            "that put others' legitimate rights and interests at risk, or that "
                            "are very impractical (for example information on backup tapes).",
                            "对于您合理的请求，我们原则上不收取费用，但对多次重复、超出合理限度的请求，"
                            "我们将视情况收取一定成本费用。对于那些无端重复、需要过多技术手段"
                            "（例如，需要开发新系统或从根本上改变现行惯例）、给他人合法权益带来风险或者非常不切实际"
                            "（例如，涉及备份磁带上存放的信息）的请求，我们可能会予以拒绝。",
                        )
                    ),
                ],
            ),
        ]
        intro = [
            Paragraph(
                self.t(
                    "Under the relevant laws, regulations and standards of China, and following "
                    "common practice in other countries and regions, you can exercise the "
                    "following rights over your personal information. If you have questions or "
                    "requests about them, contact us as described in 9 (How to Contact Us).",
                    "按照中国相关的法律、法规、标准，以及其他国家、地区的通行做法，我们保障您对自己的个人信息行使以下权利。"
                    "如您对行使这些权利有任何疑问或诉求，也可以通过第 9 部分（如何联系我们）中的方式与我们联系。",
                )
            )
        ]
        return self.top("5", list(intro), subs)

    # --- 6 minors, 7 network, 8 revisions, 9 contact -------------------------------------

    def s6(self) -> Section:
        blocks: list[Block] = [
            Paragraph(
                self.t(
                    "We attach great importance to protecting minors' personal information.",
                    "我们非常重视对未成年人个人信息的保护。",
                )
            ),
            Paragraph(
                self.t(
                    "If you are a minor under 14, please ask your parents or other guardians to "
                    "read this privacy policy carefully before you use Kares products and "
                    "services, or use them under the supervision and guidance of your parents or "
                    "other guardians, and give us information only with their consent.",
                    "如果您是不满十四周岁的未成年人，请您的父母或其他监护人在您使用 Kares "
                    "产品和服务前仔细阅读本隐私政策，或在父母或其他监护人的监护、指导下使用我们的产品和服务，"
                    "并在征得其同意的前提下向我们提供信息。",
                )
            ),
        ]
        cats = self.cat.categories
        if MINOR_CATEGORY in cats and AGE_CATEGORY in cats:
            via = ""
            if GUARDIAN_FUNCTION in self.cat.functions:
                via = self.t(
                    f', through "{self.fn_name(GUARDIAN_FUNCTION)}" (see 5.3)',
                    f"（通过“{self.fn_name(GUARDIAN_FUNCTION)}”，见 5.3）",
                )
            blocks.append(
                Paragraph(
                    self.t(
                        "The personal information of a child under 14 is sensitive personal "
                        f"information. We ask for the {self.cat_inline(AGE_CATEGORY)} when an "
                        "account is created. When an account belongs to a child under 14, we "
                        "process the child's personal information only after a parent or other "
                        f"guardian has consented{via}. The record of that consent "
                        f"({self.cat_inline(MINOR_CATEGORY)}) is "
                        f"{self.retention(cats[MINOR_CATEGORY].retention)}.",
                        "不满十四周岁未成年人的个人信息属于敏感个人信息。创建账号时，我们会询问"
                        f"{self.cat_name(AGE_CATEGORY)}。账号属于不满十四周岁的儿童时，"
                        f"我们仅在其父母或其他监护人同意后{via}处理该儿童的个人信息。"
                        f"该同意记录（{self.cat_name(MINOR_CATEGORY)}）"
                        f"{self.retention(cats[MINOR_CATEGORY].retention)}。",
                    )
                )
            )
        return self.top("6", blocks, [])

    def s7(self) -> Section:
        return self.top(
            "7",
            [
                Paragraph(
                    self.t(
                        "Kares is an online service. The Kares apps, mini-programs and watches "
                        "reach our servers over the wireless (Wi-Fi) or mobile-data network of "
                        "your device; the web portal is reached with your browser; and "
                        "third-party applications reach Kares through our published API, and "
                        "only with your authorisation (see 3.1.1). Without a network connection "
                        "you can use only what is already stored on your device.",
                        "Kares 是一项在线服务。Kares 应用程序、小程序和手表通过您设备的无线局域网（Wi-Fi）"
                        "或移动数据网络连接我们的服务器；网页端通过您的浏览器访问；第三方应用通过我们公开的 API 接入，"
                        "且仅在您授权后方可访问（见 3.1.1）。无网络连接时，您仅能使用已保存在设备上的内容。",
                    )
                )
            ],
            [],
        )

    def s8(self) -> Section:
        p = self.p
        version = self.t(
            f"This version: {p.version}, updated {format_date(p.date, 'en')}, effective "
            f"{format_date(p.effective, 'en')}. ",
            f"本版本：{p.version}，更新日期 {format_date(p.date, 'zh')}，生效日期 "
            f"{format_date(p.effective, 'zh')}。",
        )
        version += (
            self.t("It contains significant changes.", "本版本包含重大变更。")
            if p.significant
            else self.t("It contains no significant change.", "本版本不包含重大变更。")
        )
        version += self.t(" Changes in this version:", "本版本的变更：")
        return self.top(
            "8",
            [
                Paragraph(self.t("Our privacy policy may change.", "我们的隐私政策可能变更。")),
                Paragraph(
                    self.t(
                        "We will not reduce your rights under this privacy policy without your "
                        "explicit consent. We publish every change to this privacy policy on "
                        "this page.",
                        "未经您明确同意，我们不会削减您按照本隐私政策所应享有的权利。"
                        "我们会在本页面上发布对本隐私政策所做的任何变更。",
                    )
                ),
                Paragraph(
                    self.t(
                        "For significant changes we notify you through the main page of the "
                        "product or service, in-app notifications, e-mail or other appropriate "
                        "means that reach you, and we ask for your consent again before they "
                        "apply to you. If you do not agree with such changes, please stop using "
                        "Kares products and services.",
                        "对于重大变更，我们会通过产品或服务的主要曝光页面、站内通知、邮件或其他合适的能触达您的方式通知您，"
                        "并在变更对您适用前重新征得您的同意。若您不同意该等变更，请您立即停止使用 Kares 产品和服务。",
                    )
                ),
                Paragraph(
                    self.t(
                        "Significant changes include, but are not limited to, any change that "
                        "would take more than you agreed to:",
                        "本政策所指的重大变更包括但不限于超出您已同意范围的以下变更：",
                    )
                ),
                Items(
                    [
                        self.t(
                            "a function using a new kind of personal information, or a new "
                            "function;",
                            "某项功能使用新的个人信息类别，或新增功能；",
                        ),
                        self.t(
                            "a change in the purpose or legal basis of a function;",
                            "功能的处理目的或合法性基础发生变化；",
                        ),
                        self.t(
                            "a new third party receiving personal information;",
                            "新增接收个人信息的第三方；",
                        ),
                        self.t(
                            "a longer retention period.",
                            "延长保存期限。",
                        ),
                    ]
                ),
                Paragraph(
                    self.t(
                        "Changes that only give you more, such as a shorter retention period, "
                        "apply without asking you again.",
                        "仅对您更有利的变更（如缩短保存期限）无需重新征得您的同意即可适用。",
                    )
                ),
                Paragraph(
                    self.t(
                        "A significant change to a function that does not rest on your consent "
                        "(section 1 marks these as available before you give any consent, such "
                        "as account security and your privacy choices) is announced here and in "
                        "the list of versions, and applies without asking you again, because "
                        "its legal basis is not your consent.",
                        "对不以您的同意为合法性基础的功能（第一部分中标注为在您作出任何同意之前即可使用的功能，"
                        "如账号安全和您的隐私选择）作出的重大变更，我们会在本页面及历史版本列表中公布，"
                        "该等变更无需重新征得您的同意即可适用，因为其合法性基础并非您的同意。",
                    )
                ),
                Paragraph(version),
                Items([self.tx(c) for c in p.changes]),
            ],
            [],
        )

    def s9(self) -> Section:
        p = self.p
        return self.top(
            "9",
            [
                Paragraph(
                    self.t(
                        "Kares grows through the joint efforts of its users and of experts of "
                        "every kind. We are grateful for your contributions to Kares: data "
                        "updates, feedback on its use, and help in improving its functions and "
                        "services so that they serve more people more conveniently.",
                        "Kares 的成长离不开用户与各方专家的共同努力，我们非常感谢您对 Kares 数据更新、使用反馈方面的贡献，"
                        "以及帮助我们优化产品功能和服务，让我们的产品和服务能为更多用户提供更便捷的服务。",
                    )
                ),
                Paragraph(
                    self.t(
                        f"Kares is operated by {self.tx(p.operator)}. If you have any "
                        "questions, comments or suggestions about this privacy policy, please "
                        f"send them to {p.contact_email}.",
                        f"Kares 由{self.tx(p.operator)}运营。如果您对本隐私政策有任何疑问、意见或建议，"
                        f"请发送至 {p.contact_email}。",
                    )
                ),
                Paragraph(
                    self.t(
                        "We review e-mails as soon as possible and reply within "
                        f"{p.response_working_days} working days.",
                        f"我们将尽快审核邮件，并在 {p.response_working_days} 个工作日内予以回复。",
                    )
                ),
            ],
            [],
        )

    # --- appendices --------------------------------------------------------------------

    def definitions(self) -> Section:
        sensitive = self.join(
            [self.tx(c.name) for c in self.cat.categories.values() if c.sensitive]
        )
        items = [
            self.t(
                "Personal information: any information, recorded electronically or otherwise, "
                "relating to an identified or identifiable natural person, excluding anonymised "
                "information (PIPL Article 4).",
                "个人信息：以电子或者其他方式记录的与已识别或者可识别的自然人有关的各种信息，"
                "不包括匿名化处理后的信息（《个人信息保护法》第4条）。",
            ),
            self.t(
                "Sensitive personal information: personal information whose leakage or illegal "
                "use can easily harm a person's dignity or the safety of their person or "
                "property, including biometrics, religious belief, specific identity, medical "
                "health, financial accounts, whereabouts, and any personal information of a "
                "minor under 14 (PIPL Article 28). In this policy: " + sensitive + ".",
                "敏感个人信息：一旦泄露或者非法使用，容易导致自然人的人格尊严受到侵害或者人身、财产安全受到危害的个人信息，"
                "包括生物识别、宗教信仰、特定身份、医疗健康、金融账户、行踪轨迹等信息，以及不满十四周岁未成年人的个人信息"
                "（《个人信息保护法》第28条）。本政策中包括：" + sensitive + "。",
            ),
            self.t(
                "Separate consent: a consent you give specifically to one processing of "
                "personal information, apart from accepting this policy as a whole.",
                "单独同意：针对某一项个人信息处理活动专门作出的同意，独立于您对本政策整体的同意。",
            ),
            self.t(
                "Basic function: a function that accepting this policy covers. Extended "
                "function: a function that asks for your own consent when you first use it.",
                "基本功能：您同意本政策即涵盖的功能。扩展功能：首次使用时另行征求您同意的功能。",
            ),
            self.t(
                "Legal basis: the ground in law on which personal information is processed "
                "(PIPL Article 13); those that need no consent are listed in 1.5.",
                "合法性基础：处理个人信息所依据的法律理由（《个人信息保护法》第13条）；无需同意的情形列于 1.5。",
            ),
            self.t(
                "De-identification: processing personal information so that it cannot identify "
                "a specific person without the help of additional information (PIPL Article "
                "73).",
                "去标识化：个人信息经过处理，使其在不借助额外信息的情况下无法识别特定自然人的过程"
                "（《个人信息保护法》第73条）。",
            ),
            self.t(
                "Anonymisation: processing personal information so that it cannot identify a "
                "specific person and cannot be restored (PIPL Article 73).",
                "匿名化：个人信息经过处理无法识别特定自然人且不能复原的过程（《个人信息保护法》第73条）。",
            ),
            self.t(
                "Minor under 14 (child): a person who has not reached the age of fourteen.",
                "不满十四周岁的未成年人（儿童）：未满十四周岁的自然人。",
            ),
            self.t(
                "IDFV and OAID: the identifier for vendors on iOS and the open anonymous "
                "device identifier on Android; neither is the hardware serial number.",
                "IDFV 和 OAID：iOS 上的供应商标识符和 Android 上的开放匿名设备标识符；二者均不是硬件序列号。",
            ),
            self.t(
                "Cookie: see 2. SDK: a software development kit, code of a third party built "
                "into an app (see 1.6.2 and 3.5). API: an application programming interface.",
                "Cookie：见第 2 部分。SDK：软件开发工具包，即集成在应用中的第三方代码（见 1.6.2 和 3.5）。"
                "API：应用程序接口。",
            ),
            self.t(
                "Working day: a working day of the Chinese calendar, that is Monday to Friday "
                "except statutory holidays, plus the make-up working days the State Council "
                "announces.",
                "工作日：按中国日历计算的工作日，即周一至周五（法定节假日除外），以及国务院公布的调休上班日。",
            ),
            self.t(
                "Fides key: the name of a kind of personal information in the public Fideslang "
                "taxonomy, used in the data map so that privacy tools can read it.",
                "Fides 键：某类个人信息在公开的 Fideslang 分类体系中的名称，用于数据清单，便于隐私管理工具读取。",
            ),
        ]
        return Section(
            "definitions", None, self.t("Appendix: Definitions", "附录：定义"), [Items(items)]
        )

    def data_map(self) -> Section:
        rows = [
            [
                f"{r.table}.{r.column}",
                self.tx(r.category_name),
                self.yes_no(r.sensitive),
                r.fides,
                self.join([self.fn_name(f) for f in r.functions]),
                self.retention_short(r.retention),
                self.yes_no(r.encrypted),
            ]
            for r in self.rows
        ]
        return Section(
            "data-map",
            None,
            self.t("Appendix: Data Map", "附录：数据清单"),
            [
                Paragraph(
                    self.t(
                        "Every place where Kares stores personal information, taken from the "
                        "software's own declarations: the table and column, the kind of "
                        "personal information, whether it is sensitive, its key in the "
                        "Fideslang taxonomy, the functions that use it, how long it is kept, "
                        "and whether it is encrypted at rest. It is also published as JSON at "
                        "/api/v1/privacy/data-map.",
                        "Kares 存储个人信息的全部位置，取自软件自身的声明：数据表和字段、个人信息类别、是否敏感、"
                        "在 Fideslang 分类体系中的键、使用该信息的功能、保存期限以及是否加密存储。"
                        "数据清单同时以 JSON 格式发布于 /api/v1/privacy/data-map。",
                    )
                ),
                Table(
                    "data-map-table",
                    [
                        self.t("Table and column", "数据表和字段"),
                        self.t("Personal information", "个人信息"),
                        self.t("Sensitive", "是否敏感"),
                        self.t("Fides key", "Fides 键"),
                        self.t("Functions", "功能"),
                        self.t("Kept", "保存期限"),
                        self.t("Encrypted at rest", "加密存储"),
                    ],
                    rows,
                ),
            ],
        )


def build(cat: Catalog, lang: str, rows: list[DataMapRow]) -> Document:
    return _Builder(cat, lang, rows).build()
