"""The words of the support desk's pages in English and Japanese (the JEAG carriers' language).

The English text is the key; a page asks `translate(lang, text, **values)`. A text missing from a
catalogue reads in English, so a new label never breaks a page. The desk's own sentences (errors,
what a change does to live sessions) stay in English: they are the same words the CLI prints.
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES = ("en", "ja")
DEFAULT = "en"

JA: Mapping[str, str] = {
    # layout
    "OP25B support desk": "OP25B サポートデスク",
    "Signed in as {name} ({role})": "{name}（{role}）としてサインイン中",
    "Sign out": "サインアウト",
    "Search": "検索",
    "Exemptions expiring": "期限が近い除外",
    "Audit log": "監査ログ",
    "Language": "言語",
    "Main": "メイン",
    "viewer": "閲覧者",
    "agent": "オペレーター",
    "admin": "管理者",
    # sign-in
    "Sign in": "サインイン",
    "Username": "ユーザー名",
    "Password": "パスワード",
    "wrong username or password": "ユーザー名またはパスワードが違います",
    "Too many failed sign-ins. Try again in {wait}.": "サインインの失敗が多すぎます。{wait}後にもう一度お試しください。",
    "{n} minutes": "{n}分",
    "1 minute": "1分",
    "{n} seconds": "{n}秒",
    # search
    "Username (or the start of one) or IP address": "ユーザー名（前方一致）または IP アドレス",
    "No subscriber starts with {q}.": "{q} で始まる加入者はいません。",
    "{n} of {total} subscribers": "{total} 件中 {n} 件の加入者",
    "Address {address}": "アドレス {address}",
    "Static owner": "固定 IP の契約者",
    "nobody": "なし",
    "Open sessions now": "現在接続中のセッション",
    "Last session": "最後のセッション",
    "Who had it at {at}": "{at} 時点の利用者",
    "none": "なし",
    # subscriber
    "Subscriber {name}": "加入者 {name}",
    "Decision": "判定",
    "Why": "判定の理由",
    "full": "full（ポート 25 をすべて遮断）",
    "mobile": "mobile（携帯事業者宛てのみ遮断）",
    "Outbound port 25 is blocked (full OP25B).": "外向きポート 25 は遮断されています（フル OP25B）。",
    "Outbound port 25 is blocked towards mobile carriers' mail servers only (mobile OP25B).": (
        "外向きポート 25 は携帯事業者のメールサーバー宛てのみ遮断されています（モバイル OP25B）。"
    ),
    "No port 25 filter: the customer can send mail directly.": (
        "ポート 25 のフィルタはありません。お客様は直接メールを送信できます。"
    ),
    "Not a known subscriber: the policy default applies.": "登録されていない加入者です。ポリシーの既定値が適用されます。",
    "Details": "詳細",
    "Realm": "レルム",
    "IP type": "IP 種別",
    "Static addresses": "固定アドレス",
    "Class override": "クラスの上書き",
    "Note": "メモ",
    "Created": "作成日時",
    "Updated": "更新日時",
    "dynamic": "動的",
    "static": "固定",
    "Exemption history": "除外の履歴",
    "No exemptions.": "除外の記録はありません。",
    "Granted": "付与",
    "By": "担当者",
    "Reason": "理由",
    "Ends": "終了",
    "State": "状態",
    "active": "有効",
    "ended": "終了済み",
    "ended {at} by {who}: {reason}": "{at} に {who} が終了：{reason}",
    "Open sessions": "接続中のセッション",
    "No open sessions.": "接続中のセッションはありません。",
    "NAS": "NAS",
    "Session": "セッション",
    "Address": "アドレス",
    "Class applied": "適用中のクラス",
    "Started": "開始",
    "Last push": "直近の反映",
    "never pushed": "反映なし",
    "Grant an exemption": "除外を付与する",
    "Duration": "期間",
    "e.g. 30d, 12h, 2w": "例：30d、12h、2w",
    "Until": "終了日",
    "Give either a Duration or an Until date.": "期間か終了日のどちらか一方を指定してください。",
    "Move the end of the active exemption": "有効な除外の終了日を変更する",
    "Apply at next login instead": "次回ログイン時に適用する（今は切断しない）",
    "Exempt": "除外する",
    "End exemption": "除外を終了する",
    "End the active exemption": "有効な除外を終了する",
    "Warning: this change will DISCONNECT a live session.": "注意：この変更で接続中のセッションが切断されます。",
    "This customer's session on NAS {nas} will be DISCONNECTED and reconnect ({why}).": (
        "NAS {nas} 上のこのお客様のセッションは切断され、再接続されます（{why}）。"
    ),
    "Tick \u201cApply at next login instead\u201d to leave it connected.": (
        "接続を維持するには「次回ログイン時に適用する」にチェックしてください。"
    ),
    "You can read this subscriber; changes need the agent role.": "閲覧のみ可能です。変更にはオペレーター権限が必要です。",
    # results
    "Exemption granted": "除外を付与しました",
    "Exemption ended": "除外を終了しました",
    "Decision now": "現在の判定",
    "Live sessions": "接続中のセッションへの影響",
    "No live sessions to change.": "変更の必要な接続中セッションはありません。",
    "Back to {name}": "{name} に戻る",
    # exemptions
    "Expiring within": "期限までの期間",
    "1 day": "1日",
    "7 days": "7日",
    "30 days": "30日",
    "all": "すべて",
    "Show": "表示",
    "No active exemptions end in this period.": "この期間に終了する有効な除外はありません。",
    "Subscriber": "加入者",
    # audit
    "User": "ユーザー",
    "Since": "開始日",
    "Action": "操作",
    "any": "すべて",
    "At": "日時",
    "Actor": "担当者",
    "Via": "経路",
    "Target": "対象",
    "Change": "変更内容",
    "No entries.": "記録はありません。",
    "Filter": "絞り込み",
    # errors
    "Error": "エラー",
    "Nothing was changed.": "何も変更されていません。",
    "missing or wrong form token": "フォームのトークンがないか、正しくありません",
    "Back": "戻る",
    "Not Found": "見つかりません",
    "Method Not Allowed": "許可されていないメソッドです",
    "{name} is not an enabled staff member": "{name} は有効なスタッフではありません",
}

CATALOGUES: Mapping[str, Mapping[str, str]] = {"en": {}, "ja": JA}


def translate(lang: str, text: str, **values: object) -> str:
    """`text` in `lang`, with `{name}` fields filled in (the values are not translated)."""
    template = CATALOGUES.get(lang, {}).get(text, text)
    return template.format(**values) if values else template


def choose(accept_language: str | None, cookie: str | None = None, query: str | None = None) -> str:
    """The page's language: `?lang=`, then the `lang` cookie, then the browser's preference
    (Accept-Language, by q-value; the first listed wins a tie), then English."""
    for given in (query, cookie):
        if given in LANGUAGES:
            return given
    best, best_q = DEFAULT, 0.0
    for part in (accept_language or "").split(",")[:32]:
        tag, _, params = part.strip().partition(";")
        base = tag.strip().lower().split("-")[0]
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if base in LANGUAGES and q > best_q:
            best, best_q = base, q
    return best


def in_words(lang: str, seconds: float) -> str:
    """A wait, as a person says it: "4 minutes", "1 minute", "30 seconds"."""
    whole = max(1, int(seconds + 0.999))
    if whole < 60:
        return translate(lang, "{n} seconds", n=whole)
    minutes = (whole + 59) // 60
    return translate(lang, "1 minute") if minutes == 1 else translate(lang, "{n} minutes", n=minutes)
